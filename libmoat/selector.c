#include "selector.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* From k8s.io/apimachinery/pkg/util/validation: IsQualifiedName and IsValidLabelValue. */
#define LABEL_NAME_MAX_LEN   63
#define LABEL_PREFIX_MAX_LEN 253
#define LABEL_VALUE_MAX_LEN  63

typedef enum {
    OP_EQUALS,
    OP_DOUBLE_EQUALS,
    OP_NOT_EQUALS,
    OP_IN,
    OP_NOT_IN,
    OP_EXISTS,
    OP_DOES_NOT_EXIST,
    OP_GREATER_THAN,
    OP_LESS_THAN,
} selector_op;

typedef struct {
    char *key;
    selector_op op;
    /* Sorted and unique. One value for =, ==, !=, > and <; at least one for in and notin
     * (the empty string for "()"); none for exists and does not exist. No cap of its own:
     * every value takes at least one byte of a text bounded by KUBE_SELECTOR_MAX_LEN. */
    char **values;
    size_t n_values;
    int64_t number; /* the value of > and < */
} requirement;

struct kube_selector {
    requirement *reqs; /* sorted by key, then operator and values */
    size_t n_reqs;
    size_t cap_reqs;
};

static void requirement_done(requirement *r)
{
    free(r->key);
    for (size_t i = 0; i < r->n_values; i++)
        free(r->values[i]);
    free(r->values);
    *r = (requirement){0};
}

void kube_selector_free(kube_selector *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n_reqs; i++)
        requirement_done(&s->reqs[i]);
    free(s->reqs);
    free(s);
}

static void kube_selector_freep(kube_selector **s)
{
    kube_selector_free(*s);
}

/* ---- Validation of keys and values ---- */

static bool is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* [A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])? */
static bool is_label_word(const char *s, size_t len)
{
    if (len == 0 || !is_alnum(s[0]) || !is_alnum(s[len - 1]))
        return false;
    for (size_t i = 1; i + 1 < len; i++)
        if (!is_alnum(s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
            return false;
    return true;
}

/* A DNS-1123 subdomain: dot-separated labels of [a-z0-9-], each starting and ending with
 * [a-z0-9]. Kubernetes limits only the whole (253), not each label. */
static bool is_dns_subdomain(const char *s, size_t len)
{
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != '.') {
            if (!(s[i] >= 'a' && s[i] <= 'z') && !(s[i] >= '0' && s[i] <= '9') && s[i] != '-')
                return false;
            continue;
        }
        if (i == start || s[start] == '-' || s[i - 1] == '-')
            return false;
        start = i + 1;
    }
    return true;
}

#define CHARSET_RULE                                                                               \
    "must consist of alphanumerics, '-', '_' or '.', and start and end with an alphanumeric"

/* NULL when s[0..len) is a valid label key, else why not. */
static const char *key_problem(const char *s, size_t len)
{
    const char *name = s;
    size_t name_len = len;
    const char *slash = memchr(s, '/', len);
    if (slash) {
        size_t prefix_len = (size_t)(slash - s);
        name = slash + 1;
        name_len = len - prefix_len - 1;
        if (memchr(name, '/', name_len))
            return "it has more than one '/'";
        if (prefix_len == 0)
            return "its prefix (before '/') is empty";
        if (prefix_len > LABEL_PREFIX_MAX_LEN)
            return "its prefix is longer than 253 characters";
        if (!is_dns_subdomain(s, prefix_len))
            return "its prefix must be a DNS subdomain: lowercase alphanumerics, '-' and '.', "
                   "each part starting and ending with an alphanumeric";
    }
    if (name_len == 0)
        return "its name is empty";
    if (name_len > LABEL_NAME_MAX_LEN)
        return "its name is longer than 63 characters";
    if (!is_label_word(name, name_len))
        return "its name " CHARSET_RULE;
    return NULL;
}

/* NULL when s[0..len) is a valid label value (which may be empty), else why not. */
static const char *value_problem(const char *s, size_t len)
{
    if (len > LABEL_VALUE_MAX_LEN)
        return "it is longer than 63 characters";
    if (len > 0 && !is_label_word(s, len))
        return "it " CHARSET_RULE;
    return NULL;
}

/* strconv.ParseInt(s, 10, 64), which is what "k>n" and "k<n" use on both sides. */
static bool parse_int64(int64_t *ret, const char *s, size_t len)
{
    size_t i = 0;
    bool negative = false;
    if (len > 0 && (s[0] == '+' || s[0] == '-'))
        negative = s[i++] == '-';
    if (i == len)
        return false;
    uint64_t limit = negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    uint64_t v = 0;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (limit - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *ret = negative ? (int64_t)(0 - v) : (int64_t)v;
    return true;
}

/* ---- Lexer (labels.Lexer) ---- */

typedef enum {
    T_END,
    T_IDENT, /* also "in" and "notin": they are operators only where an operator is expected */
    T_COMMA,
    T_OPEN,
    T_CLOSE,
    T_NOT,
    T_EQUALS,
    T_DOUBLE_EQUALS,
    T_NOT_EQUALS,
    T_GREATER,
    T_LESS,
} token_type;

typedef struct {
    token_type type;
    size_t start, len;
} token;

typedef struct {
    const char *text;
    size_t pos;
    moat_error *err;
} parser;

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool is_special(char c)
{
    return c == '=' || c == '!' || c == '(' || c == ')' || c == ',' || c == '>' || c == '<';
}

static token lex(parser *p)
{
    const char *t = p->text;
    while (is_space(t[p->pos]))
        p->pos++;
    token tok = {T_END, p->pos, 0};
    char c = t[p->pos];
    if (c == '\0')
        return tok;
    if (is_special(c)) {
        /* Kubernetes takes the longest operator: "!=" and "==" over "!" and "=". */
        bool then_equals = t[p->pos + 1] == '=';
        tok.len = 1;
        switch (c) {
        case '=':
            tok.type = then_equals ? T_DOUBLE_EQUALS : T_EQUALS;
            tok.len += then_equals;
            break;
        case '!':
            tok.type = then_equals ? T_NOT_EQUALS : T_NOT;
            tok.len += then_equals;
            break;
        case '(':
            tok.type = T_OPEN;
            break;
        case ')':
            tok.type = T_CLOSE;
            break;
        case ',':
            tok.type = T_COMMA;
            break;
        case '>':
            tok.type = T_GREATER;
            break;
        default:
            tok.type = T_LESS;
            break;
        }
    } else {
        /* Anything else up to a space or an operator: validation rejects bad characters,
         * so the error names the whole word. */
        tok.type = T_IDENT;
        while (t[p->pos + tok.len] && !is_space(t[p->pos + tok.len]) &&
               !is_special(t[p->pos + tok.len]))
            tok.len++;
    }
    p->pos += tok.len;
    return tok;
}

static token peek(parser *p)
{
    size_t saved = p->pos;
    token tok = lex(p);
    p->pos = saved;
    return tok;
}

static bool token_is(const parser *p, token tok, const char *word)
{
    return tok.type == T_IDENT && tok.len == strlen(word) &&
           memcmp(p->text + tok.start, word, tok.len) == 0;
}

/* ---- Errors ---- */

/* s[0..len) for a message inside quote characters q: backslash, q and non-printable bytes
 * escaped, so a hostile selector cannot forge log lines. */
static char *quote(const char *s, size_t len, char q)
{
    char *out = malloc(len * 4 + 1);
    if (!out)
        return NULL;
    char *o = out;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\\' || c == (unsigned char)q) {
            *o++ = '\\';
            *o++ = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            o += sprintf(o, "\\x%02x", c);
        } else {
            *o++ = (char)c;
        }
    }
    *o = '\0';
    return out;
}

static int parser_oom(parser *p)
{
    return moat_error_set(p->err, MOAT_E_NOMEM, "label selector: out of memory");
}

/* Fails with `label selector "<text>": position <pos + 1>: <message>`. */
static int error_at(parser *p, moat_error_code code, size_t pos, const char *fmt, ...)
    _printf_(4, 5);
static int error_at(parser *p, moat_error_code code, size_t pos, const char *fmt, ...)
{
    _cleanup_free_ char *msg = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    _cleanup_free_ char *text = quote(p->text, strlen(p->text), '"');
    if (!msg || !text)
        return parser_oom(p);
    return moat_error_set(p->err, code, "label selector \"%s\": position %zu: %s", text, pos + 1,
                          msg);
}

/* "found '<tok>', expected <what>", or "expected <what>" at the end of the text. */
static int expected(parser *p, token tok, const char *what)
{
    if (tok.type == T_END)
        return error_at(p, MOAT_E_INVALID, tok.start, "expected %s", what);
    _cleanup_free_ char *found = quote(p->text + tok.start, tok.len, '\'');
    if (!found)
        return parser_oom(p);
    return error_at(p, MOAT_E_INVALID, tok.start, "found '%s', expected %s", found, what);
}

/* Inside "( ... )" the end of the text always means the list was not closed. */
static int expected_in_set(parser *p, token tok, const char *what)
{
    return expected(p, tok, tok.type == T_END ? "')'" : what);
}

static int invalid_token(parser *p, token tok, const char *what, const char *problem)
{
    _cleanup_free_ char *found = quote(p->text + tok.start, tok.len, '\'');
    if (!found)
        return parser_oom(p);
    return error_at(p, MOAT_E_INVALID, tok.start, "invalid %s '%s': %s", what, found, problem);
}

/* ---- Parser (labels.Parser) ---- */

/* Adds the value of tok (the empty string for T_END, T_COMMA or T_CLOSE) to r, validated. */
static int add_value(parser *p, requirement *r, token tok, size_t *cap)
{
    size_t len = tok.type == T_IDENT ? tok.len : 0;
    const char *problem = value_problem(p->text + tok.start, len);
    if (problem)
        return invalid_token(p, tok, "value", problem);
    if (r->n_values == *cap) {
        size_t n = *cap ? *cap * 2 : 4;
        char **values = reallocarray(r->values, n, sizeof(*values));
        if (!values)
            return parser_oom(p);
        r->values = values;
        *cap = n;
    }
    r->values[r->n_values] = strndup(p->text + tok.start, len);
    if (!r->values[r->n_values])
        return parser_oom(p);
    r->n_values++;
    return 0;
}

/* The value after =, ==, !=, > or <: one word, or nothing (the empty value). */
static int parse_exact_value(parser *p, requirement *r)
{
    size_t cap = 0;
    token tok = peek(p);
    if (tok.type != T_END && tok.type != T_COMMA) {
        tok = lex(p);
        if (tok.type != T_IDENT)
            return expected(p, tok, "a value");
    }
    if (r->op != OP_GREATER_THAN && r->op != OP_LESS_THAN)
        return add_value(p, r, tok, &cap);
    if (tok.type != T_IDENT)
        return expected(p, tok, "an integer");
    if (add_value(p, r, tok, &cap) < 0)
        return -1;
    if (!parse_int64(&r->number, p->text + tok.start, tok.len))
        return invalid_token(p, tok, "value", "'>' and '<' need an integer");
    return 0;
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "(a, b, c)". Follows parseValues and parseIdentifiersList exactly, including their edge
 * cases: "()" and "(,)" are the empty value, "(a,)" and "(,a)" add it, "(,,)" is an error. */
static int parse_set(parser *p, requirement *r)
{
    size_t cap = 0;
    token tok = lex(p);
    if (tok.type != T_OPEN)
        return expected(p, tok, "'('");
    token next = peek(p);
    if (next.type == T_CLOSE) {
        lex(p);
        return add_value(p, r, next, &cap);
    }
    if (next.type != T_IDENT && next.type != T_COMMA)
        return expected_in_set(p, next, "a value, ',' or ')'");
    for (;;) {
        tok = lex(p);
        if (tok.type == T_IDENT) {
            if (add_value(p, r, tok, &cap) < 0)
                return -1;
            next = peek(p);
            if (next.type == T_CLOSE)
                break;
            if (next.type != T_COMMA)
                return expected_in_set(p, next, "',' or ')'");
        } else if (tok.type == T_COMMA) {
            if (r->n_values == 0 && add_value(p, r, tok, &cap) < 0)
                return -1;
            next = peek(p);
            if (next.type == T_CLOSE) {
                if (add_value(p, r, next, &cap) < 0)
                    return -1;
                break;
            }
            if (next.type == T_COMMA) {
                lex(p);
                if (add_value(p, r, next, &cap) < 0)
                    return -1;
            }
        } else {
            return expected_in_set(p, tok, "a value or ','");
        }
    }
    lex(p); /* the ')' seen above */

    /* A set: sorted, duplicates dropped. */
    qsort(r->values, r->n_values, sizeof(*r->values), compare_strings);
    size_t n = 0;
    for (size_t i = 0; i < r->n_values; i++) {
        if (n > 0 && strcmp(r->values[n - 1], r->values[i]) == 0)
            free(r->values[i]);
        else
            r->values[n++] = r->values[i];
    }
    r->n_values = n;
    return 0;
}

static int parse_requirement(requirement *ret, parser *p)
{
    _cleanup_(requirement_done) requirement r = {0};
    token tok = lex(p);
    bool negated = tok.type == T_NOT;
    if (negated)
        tok = lex(p);
    if (tok.type != T_IDENT)
        return expected(p, tok, "a key");
    const char *problem = key_problem(p->text + tok.start, tok.len);
    if (problem)
        return invalid_token(p, tok, "key", problem);
    r.key = strndup(p->text + tok.start, tok.len);
    if (!r.key)
        return parser_oom(p);

    token next = peek(p);
    if (next.type == T_END || next.type == T_COMMA) {
        r.op = negated ? OP_DOES_NOT_EXIST : OP_EXISTS;
        *ret = r;
        r = (requirement){0};
        return 0;
    }
    if (negated)
        return expected(p, next, "',' or end of string after a '!' requirement");

    tok = lex(p);
    int ret_value;
    switch (tok.type) {
    case T_EQUALS:
    case T_DOUBLE_EQUALS:
    case T_NOT_EQUALS:
    case T_GREATER:
    case T_LESS:
        r.op = tok.type == T_EQUALS          ? OP_EQUALS
               : tok.type == T_DOUBLE_EQUALS ? OP_DOUBLE_EQUALS
               : tok.type == T_NOT_EQUALS    ? OP_NOT_EQUALS
               : tok.type == T_GREATER       ? OP_GREATER_THAN
                                             : OP_LESS_THAN;
        ret_value = parse_exact_value(p, &r);
        break;
    default:
        if (!token_is(p, tok, "in") && !token_is(p, tok, "notin"))
            return expected(p, tok, "an operator (=, ==, !=, in, notin, >, <)");
        r.op = token_is(p, tok, "in") ? OP_IN : OP_NOT_IN;
        ret_value = parse_set(p, &r);
        break;
    }
    if (ret_value < 0)
        return -1;
    *ret = r;
    r = (requirement){0};
    return 0;
}

static int compare_requirements(const void *pa, const void *pb)
{
    const requirement *a = pa, *b = pb;
    int c = strcmp(a->key, b->key);
    if (c != 0)
        return c;
    if (a->op != b->op)
        return a->op < b->op ? -1 : 1;
    for (size_t i = 0; i < a->n_values && i < b->n_values; i++) {
        c = strcmp(a->values[i], b->values[i]);
        if (c != 0)
            return c;
    }
    return a->n_values < b->n_values ? -1 : a->n_values > b->n_values;
}

/* ---- Canonical form (labels.Requirement.String) ---- */

typedef struct {
    char *buf; /* NULL: only count */
    size_t len;
} writer;

static void put(writer *w, const char *s)
{
    size_t n = strlen(s);
    if (w->buf)
        memcpy(w->buf + w->len, s, n);
    w->len += n;
}

static void render(writer *w, const kube_selector *s)
{
    static const char *const op_text[] = {
        [OP_EQUALS] = "=",        [OP_DOUBLE_EQUALS] = "==", [OP_NOT_EQUALS] = "!=",
        [OP_IN] = " in (",        [OP_NOT_IN] = " notin (",  [OP_EXISTS] = "",
        [OP_DOES_NOT_EXIST] = "", [OP_GREATER_THAN] = ">",   [OP_LESS_THAN] = "<",
    };
    for (size_t i = 0; i < s->n_reqs; i++) {
        const requirement *r = &s->reqs[i];
        if (i > 0)
            put(w, ",");
        if (r->op == OP_DOES_NOT_EXIST)
            put(w, "!");
        put(w, r->key);
        put(w, op_text[r->op]);
        for (size_t j = 0; j < r->n_values; j++) {
            if (j > 0)
                put(w, ",");
            put(w, r->values[j]);
        }
        if (r->op == OP_IN || r->op == OP_NOT_IN)
            put(w, ")");
    }
}

char *kube_selector_string(const kube_selector *s)
{
    if (!s)
        return NULL;
    writer w = {NULL, 0};
    render(&w, s);
    w.buf = malloc(w.len + 1);
    if (!w.buf)
        return NULL;
    w.len = 0;
    render(&w, s);
    w.buf[w.len] = '\0';
    return w.buf;
}

int kube_selector_parse(kube_selector **out, const char *text, moat_error *err)
{
    if (!text)
        return moat_error_set(err, MOAT_E_INVALID, "label selector is NULL");
    if (strnlen(text, KUBE_SELECTOR_MAX_LEN + 1) > KUBE_SELECTOR_MAX_LEN)
        return moat_error_set(err, MOAT_E_NOMEM, "label selector is longer than %d bytes",
                              KUBE_SELECTOR_MAX_LEN);

    parser p = {text, 0, err};
    _cleanup_(kube_selector_freep) kube_selector *s = calloc(1, sizeof(*s));
    if (!s)
        return parser_oom(&p);

    token tok = peek(&p);
    while (tok.type != T_END) {
        if (tok.type != T_IDENT && tok.type != T_NOT)
            return expected(&p, tok,
                            s->n_reqs == 0 ? "a key, '!' or end of string" : "a key after ','");
        if (s->n_reqs == KUBE_SELECTOR_MAX_REQUIREMENTS)
            return error_at(&p, MOAT_E_NOMEM, tok.start, "more than %d requirements",
                            KUBE_SELECTOR_MAX_REQUIREMENTS);
        if (s->n_reqs == s->cap_reqs) {
            size_t n = s->cap_reqs ? s->cap_reqs * 2 : 4;
            requirement *reqs = reallocarray(s->reqs, n, sizeof(*reqs));
            if (!reqs)
                return parser_oom(&p);
            s->reqs = reqs;
            s->cap_reqs = n;
        }
        if (parse_requirement(&s->reqs[s->n_reqs], &p) < 0)
            return -1;
        s->n_reqs++;

        tok = lex(&p);
        if (tok.type == T_END)
            break;
        if (tok.type != T_COMMA)
            return expected(&p, tok, "',' or end of string");
        /* After a comma another requirement must follow: "a=b," is an error. */
        tok = peek(&p);
        if (tok.type == T_END)
            return expected(&p, tok, "a key after ','");
    }

    if (s->n_reqs > 1) /* qsort wants a non-NULL base even for nothing to sort */
        qsort(s->reqs, s->n_reqs, sizeof(*s->reqs), compare_requirements);

    /* "k in(v)" is written "k in (v)": the canonical form can be a little longer than the
     * text, and must stay parseable. */
    writer w = {NULL, 0};
    render(&w, s);
    if (w.len > KUBE_SELECTOR_MAX_LEN)
        return moat_error_set(err, MOAT_E_NOMEM,
                              "label selector: canonical form is longer than %d bytes",
                              KUBE_SELECTOR_MAX_LEN);

    *out = TAKE_PTR(s);
    return 0;
}

/* ---- Matching (labels.Requirement.Matches) ---- */

static bool has_value(const requirement *r, const char *v, size_t len)
{
    for (size_t i = 0; i < r->n_values; i++)
        if (strlen(r->values[i]) == len && memcmp(r->values[i], v, len) == 0)
            return true;
    return false;
}

/* v is the label's value, or NULL when the label is absent. */
static bool requirement_matches(const requirement *r, const char *v, size_t len)
{
    int64_t n;
    switch (r->op) {
    case OP_EQUALS:
    case OP_DOUBLE_EQUALS:
    case OP_IN:
        return v && has_value(r, v, len);
    case OP_NOT_EQUALS:
    case OP_NOT_IN:
        return !v || !has_value(r, v, len);
    case OP_EXISTS:
        return v;
    case OP_DOES_NOT_EXIST:
        return !v;
    case OP_GREATER_THAN:
        return v && parse_int64(&n, v, len) && n > r->number;
    case OP_LESS_THAN:
        return v && parse_int64(&n, v, len) && n < r->number;
    }
    return false;
}

bool kube_selector_matches(const kube_selector *s, const json_t *labels)
{
    if (!s)
        return false;
    if (json_is_null(labels))
        labels = NULL;
    for (size_t i = 0; i < s->n_reqs; i++) {
        const requirement *r = &s->reqs[i];
        if (labels && !json_is_object(labels))
            return false;
        const json_t *v = labels ? json_object_get(labels, r->key) : NULL;
        if (v && !json_is_string(v))
            return false;
        if (!requirement_matches(r, v ? json_string_value(v) : NULL, v ? json_string_length(v) : 0))
            return false;
    }
    return true;
}

/* ---- From a labels map (labels.Set.String) ---- */

typedef struct {
    const char *key;
    const char *value;
} label;

static int compare_labels(const void *a, const void *b)
{
    return strcmp(((const label *)a)->key, ((const label *)b)->key);
}

char *kube_selector_from_labels(const json_t *labels)
{
    if (!labels || json_is_null(labels))
        return strdup("");
    if (!json_is_object(labels))
        return NULL;
    /* Each label is one requirement: the result must parse with kube_selector_parse. */
    size_t n = json_object_size(labels);
    if (n > KUBE_SELECTOR_MAX_REQUIREMENTS)
        return NULL;
    _cleanup_free_ label *items = calloc(n ? n : 1, sizeof(*items));
    if (!items)
        return NULL;

    size_t i = 0, total = 0;
    /* json_object_iter takes a non-const object but does not change it. */
    for (void *it = json_object_iter((json_t *)labels); it && i < n;
         it = json_object_iter_next((json_t *)labels, it), i++) {
        const char *key = json_object_iter_key(it);
        const json_t *value = json_object_iter_value(it);
        /* A NUL inside a key or value would cut it short and select something else. */
        if (!json_is_string(value) || json_object_iter_key_len(it) != strlen(key) ||
            json_string_length(value) != strlen(json_string_value(value)))
            return NULL;
        items[i] = (label){key, json_string_value(value)};
        if (key_problem(key, strlen(key)) || value_problem(items[i].value, strlen(items[i].value)))
            return NULL;
        total += (i > 0) + strlen(key) + 1 + strlen(items[i].value);
    }
    if (total > KUBE_SELECTOR_MAX_LEN)
        return NULL;
    qsort(items, i, sizeof(*items), compare_labels);

    char *out = malloc(total + 1);
    if (!out)
        return NULL;
    writer w = {out, 0};
    for (size_t j = 0; j < i; j++) {
        if (j > 0)
            put(&w, ",");
        put(&w, items[j].key);
        put(&w, "=");
        put(&w, items[j].value);
    }
    out[w.len] = '\0';
    return out;
}
