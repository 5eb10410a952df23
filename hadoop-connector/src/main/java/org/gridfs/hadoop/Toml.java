// SPDX-License-Identifier: LGPL-3.0-or-later
package org.gridfs.hadoop;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Enough TOML to read {@code grid.toml}: tables and arrays of tables (dotted, quoted names), bare, quoted and
 * dotted keys, basic and literal strings (single and multi-line), integers (decimal, hex, octal, binary, with
 * underscores), floats, booleans, arrays over several lines and inline tables. Dates are not supported (the
 * grid writes none). Tables become {@code Map<String, Object>}, arrays {@code List<Object>}, integers
 * {@code Long}, floats {@code Double}.
 */
final class Toml {
    private final String text;
    private int pos;
    private int line = 1;

    private Toml(String text) {
        this.text = text;
    }

    static Map<String, Object> parse(String text) {
        return new Toml(text).document();
    }

    private IllegalArgumentException error(String what) {
        return new IllegalArgumentException("grid.toml line " + line + ": " + what);
    }

    private boolean done() {
        return pos >= text.length();
    }

    private char peek() {
        return done() ? '\0' : text.charAt(pos);
    }

    private void skipBlanks() {
        while (!done() && (peek() == ' ' || peek() == '\t')) {
            pos++;
        }
    }

    /** Blanks, comments and newlines (between lines, and inside arrays). */
    private void skipAll() {
        while (!done()) {
            char c = peek();
            if (c == ' ' || c == '\t' || c == '\r') {
                pos++;
            } else if (c == '\n') {
                pos++;
                line++;
            } else if (c == '#') {
                while (!done() && peek() != '\n') {
                    pos++;
                }
            } else {
                return;
            }
        }
    }

    private void endOfLine() {
        skipBlanks();
        if (peek() == '#') {
            while (!done() && peek() != '\n') {
                pos++;
            }
        }
        if (peek() == '\r') {
            pos++;
        }
        if (!done() && peek() != '\n') {
            throw error("unexpected '" + peek() + "' after a value");
        }
    }

    private Map<String, Object> document() {
        Map<String, Object> root = new LinkedHashMap<>();
        Map<String, Object> current = root;
        while (true) {
            skipAll();
            if (done()) {
                return root;
            }
            if (peek() == '[') {
                boolean arrayOfTables = text.startsWith("[[", pos);
                pos += arrayOfTables ? 2 : 1;
                skipBlanks();
                List<String> name = keyPath();
                skipBlanks();
                String close = arrayOfTables ? "]]" : "]";
                if (!text.startsWith(close, pos)) {
                    throw error("expected " + close);
                }
                pos += close.length();
                endOfLine();
                current = arrayOfTables ? appendTable(root, name) : table(root, name, name.size());
            } else {
                keyValue(current);
                endOfLine();
            }
        }
    }

    @SuppressWarnings("unchecked")
    private Map<String, Object> table(Map<String, Object> from, List<String> path, int depth) {
        Map<String, Object> t = from;
        for (int i = 0; i < depth; i++) {
            Object next = t.get(path.get(i));
            if (next == null) {
                next = new LinkedHashMap<String, Object>();
                t.put(path.get(i), next);
            } else if (next instanceof List && !((List<?>) next).isEmpty()
                    && ((List<?>) next).get(((List<?>) next).size() - 1) instanceof Map) {
                List<Object> tables = (List<Object>) next;
                next = tables.get(tables.size() - 1); // [[a]] then [a.b]: b goes in the last a
            } else if (!(next instanceof Map)) {
                throw error("'" + path.get(i) + "' is not a table");
            }
            t = (Map<String, Object>) next;
        }
        return t;
    }

    @SuppressWarnings("unchecked")
    private Map<String, Object> appendTable(Map<String, Object> root, List<String> path) {
        Map<String, Object> parent = table(root, path, path.size() - 1);
        String last = path.get(path.size() - 1);
        Object existing = parent.get(last);
        List<Object> tables;
        if (existing == null) {
            tables = new ArrayList<>();
            parent.put(last, tables);
        } else if (existing instanceof List) {
            tables = (List<Object>) existing;
        } else {
            throw error("'" + last + "' is not an array of tables");
        }
        Map<String, Object> t = new LinkedHashMap<>();
        tables.add(t);
        return t;
    }

    private void keyValue(Map<String, Object> into) {
        List<String> key = keyPath();
        skipBlanks();
        if (peek() != '=') {
            throw error("expected = after a key");
        }
        pos++;
        skipBlanks();
        Object v = value();
        Map<String, Object> t = table(into, key, key.size() - 1);
        t.put(key.get(key.size() - 1), v);
    }

    private List<String> keyPath() {
        List<String> parts = new ArrayList<>();
        while (true) {
            skipBlanks();
            char c = peek();
            if (c == '"') {
                parts.add(basicString());
            } else if (c == '\'') {
                parts.add(literalString());
            } else {
                int start = pos;
                while (!done() && (Character.isLetterOrDigit(peek()) || peek() == '_' || peek() == '-')) {
                    pos++;
                }
                if (start == pos) {
                    throw error("expected a key");
                }
                parts.add(text.substring(start, pos));
            }
            skipBlanks();
            if (peek() != '.') {
                return parts;
            }
            pos++;
        }
    }

    private Object value() {
        char c = peek();
        if (c == '"') {
            return text.startsWith("\"\"\"", pos) ? multiLine("\"\"\"", true) : basicString();
        }
        if (c == '\'') {
            return text.startsWith("'''", pos) ? multiLine("'''", false) : literalString();
        }
        if (c == '[') {
            return array();
        }
        if (c == '{') {
            return inlineTable();
        }
        int start = pos;
        while (!done() && "#,]}\n\r \t".indexOf(peek()) < 0) {
            pos++;
        }
        String word = text.substring(start, pos);
        if (word.equals("true") || word.equals("false")) {
            return Boolean.valueOf(word);
        }
        return number(word);
    }

    private Object number(String word) {
        String w = word.replace("_", "");
        try {
            if (w.startsWith("0x")) {
                return Long.parseLong(w.substring(2), 16);
            }
            if (w.startsWith("0o")) {
                return Long.parseLong(w.substring(2), 8);
            }
            if (w.startsWith("0b")) {
                return Long.parseLong(w.substring(2), 2);
            }
            if (w.endsWith("inf")) {
                return w.startsWith("-") ? Double.NEGATIVE_INFINITY : Double.POSITIVE_INFINITY;
            }
            if (w.endsWith("nan")) {
                return Double.NaN;
            }
            if (w.contains(".") || w.contains("e") || w.contains("E")) {
                return Double.parseDouble(w);
            }
            return Long.parseLong(w.startsWith("+") ? w.substring(1) : w);
        } catch (NumberFormatException ex) {
            throw error("unsupported value '" + word + "'");
        }
    }

    private List<Object> array() {
        List<Object> out = new ArrayList<>();
        pos++;
        while (true) {
            skipAll();
            if (peek() == ']') {
                pos++;
                return out;
            }
            out.add(value());
            skipAll();
            if (peek() == ',') {
                pos++;
            } else if (peek() != ']') {
                throw error("expected , or ] in an array");
            }
        }
    }

    private Map<String, Object> inlineTable() {
        Map<String, Object> out = new LinkedHashMap<>();
        pos++;
        skipBlanks();
        if (peek() == '}') {
            pos++;
            return out;
        }
        while (true) {
            skipBlanks();
            keyValue(out);
            skipBlanks();
            char c = peek();
            pos++;
            if (c == '}') {
                return out;
            }
            if (c != ',') {
                throw error("expected , or } in an inline table");
            }
        }
    }

    private String literalString() {
        pos++;
        int end = text.indexOf('\'', pos);
        int nl = text.indexOf('\n', pos);
        if (end < 0 || (nl >= 0 && nl < end)) {
            throw error("unterminated string");
        }
        String s = text.substring(pos, end);
        pos = end + 1;
        return s;
    }

    private String basicString() {
        pos++;
        StringBuilder sb = new StringBuilder();
        while (true) {
            if (done() || peek() == '\n') {
                throw error("unterminated string");
            }
            char c = text.charAt(pos++);
            if (c == '"') {
                return sb.toString();
            }
            if (c == '\\') {
                escape(sb);
            } else {
                sb.append(c);
            }
        }
    }

    private String multiLine(String delimiter, boolean escapes) {
        pos += 3;
        if (peek() == '\n') { // a newline right after the opening delimiter is not part of the string
            pos++;
            line++;
        } else if (text.startsWith("\r\n", pos)) {
            pos += 2;
            line++;
        }
        StringBuilder sb = new StringBuilder();
        while (true) {
            if (done()) {
                throw error("unterminated string");
            }
            if (text.startsWith(delimiter, pos)) {
                pos += 3;
                return sb.toString();
            }
            char c = text.charAt(pos++);
            if (c == '\n') {
                line++;
            }
            if (c == '\\' && escapes) {
                if (peek() == '\n' || peek() == '\r' || peek() == ' ' || peek() == '\t') {
                    // A line-ending backslash trims the whitespace and newlines that follow.
                    while (!done() && " \t\r\n".indexOf(peek()) >= 0) {
                        line += peek() == '\n' ? 1 : 0;
                        pos++;
                    }
                } else {
                    escape(sb);
                }
            } else {
                sb.append(c);
            }
        }
    }

    private void escape(StringBuilder sb) {
        char e = text.charAt(pos++);
        switch (e) {
            case 'b': sb.append('\b'); break;
            case 't': sb.append('\t'); break;
            case 'n': sb.append('\n'); break;
            case 'f': sb.append('\f'); break;
            case 'r': sb.append('\r'); break;
            case '"': sb.append('"'); break;
            case '\\': sb.append('\\'); break;
            case 'u':
            case 'U': {
                int n = e == 'u' ? 4 : 8;
                if (pos + n > text.length()) {
                    throw error("short unicode escape");
                }
                sb.appendCodePoint(Integer.parseInt(text.substring(pos, pos + n), 16));
                pos += n;
                break;
            }
            default:
                throw error("bad escape \\" + e);
        }
    }
}
