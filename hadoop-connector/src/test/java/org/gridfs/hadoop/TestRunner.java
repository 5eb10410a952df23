// SPDX-License-Identifier: LGPL-3.0-or-later
package org.gridfs.hadoop;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.lang.annotation.ElementType;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;
import java.lang.annotation.Target;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Function;

/**
 * A small test runner (no JUnit jar is needed): runs the {@link Test} methods of the suites named on the command
 * line, in name order, each suite's {@code before()} first and {@code after()} last, and prints one line per
 * test, {@code PASS suite.method (N ms)} or {@code FAIL suite.method: why} followed by the stack trace
 * indented, then {@code N passed, N failed}. Exits 1 when a test failed.
 *
 * <p>Usage: {@code java -cp HADOOP_JARS:gridfs-hadoop.jar:gridfs-hadoop-tests.jar org.gridfs.hadoop.TestRunner
 * [--config GRID_TOML] [--bucket B] [--fixtures DIR] [--only METHOD[,METHOD...]] SUITE...} with suites
 * {@code unit} (no grid needed), {@code contract}, {@code interop-read}, {@code interop-write},
 * {@code degraded}, {@code crash}.
 */
public final class TestRunner {
    /** Marks a test method: public, no arguments, throws on failure. */
    @Retention(RetentionPolicy.RUNTIME)
    @Target(ElementType.METHOD)
    public @interface Test {
    }

    private static final Map<String, Function<TestContext, Object>> SUITES = new LinkedHashMap<>();

    static {
        SUITES.put("unit", ctx -> new UnitTests());
        SUITES.put("contract", ContractTests::new);
        SUITES.put("interop-read", InteropTests.Read::new);
        SUITES.put("interop-write", InteropTests.Write::new);
        SUITES.put("degraded", InteropTests.Degraded::new);
        SUITES.put("crash", InteropTests.Crash::new);
    }

    private TestRunner() {
    }

    public static void main(String[] args) throws Exception {
        TestContext ctx = new TestContext();
        List<String> suites = new ArrayList<>();
        List<String> only = new ArrayList<>();
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--config": ctx.config = args[++i]; break;
                case "--bucket": ctx.bucket = args[++i]; break;
                case "--fixtures": ctx.fixtures = args[++i]; break;
                case "--only": only.addAll(Arrays.asList(args[++i].split(","))); break;
                default: suites.add(args[i]);
            }
        }
        if (suites.isEmpty()) {
            System.err.println("usage: TestRunner [--config F] [--bucket B] [--fixtures D] [--only M,...] SUITE...; "
                    + "suites: " + SUITES.keySet());
            System.exit(2);
        }
        int passed = 0;
        int failed = 0;
        for (String name : suites) {
            Function<TestContext, Object> make = SUITES.get(name);
            if (make == null) {
                System.err.println("unknown suite " + name + "; known: " + SUITES.keySet());
                System.exit(2);
            }
            Object suite = make.apply(ctx);
            List<Method> tests = new ArrayList<>();
            for (Method m : suite.getClass().getMethods()) {
                if (m.isAnnotationPresent(Test.class) && (only.isEmpty() || only.contains(m.getName()))) {
                    tests.add(m);
                }
            }
            tests.sort(Comparator.comparing(Method::getName));
            try {
                call(suite, "before");
            } catch (Throwable t) {
                System.out.println("FAIL " + name + ".before: " + describe(t));
                failed += tests.size();
                continue;
            }
            for (Method m : tests) {
                long start = System.nanoTime();
                try {
                    m.invoke(suite);
                    passed++;
                    System.out.printf("PASS %s.%s (%d ms)%n", name, m.getName(), (System.nanoTime() - start) / 1_000_000);
                } catch (InvocationTargetException ex) {
                    failed++;
                    System.out.printf("FAIL %s.%s: %s%n", name, m.getName(), describe(ex.getCause()));
                }
                System.out.flush();
            }
            try {
                call(suite, "after");
            } catch (Throwable t) {
                System.out.println("FAIL " + name + ".after: " + describe(t));
                failed++;
            }
        }
        System.out.println(passed + " passed, " + failed + " failed");
        System.exit(failed == 0 ? 0 : 1);
    }

    private static void call(Object suite, String method) throws Throwable {
        Method m;
        try {
            m = suite.getClass().getMethod(method);
        } catch (NoSuchMethodException ex) {
            return;
        }
        try {
            m.invoke(suite);
        } catch (InvocationTargetException ex) {
            throw ex.getCause();
        }
    }

    private static String describe(Throwable t) {
        StringWriter sw = new StringWriter();
        t.printStackTrace(new PrintWriter(sw));
        return t + "\n" + sw.toString().replaceAll("(?m)^", "    ");
    }
}
