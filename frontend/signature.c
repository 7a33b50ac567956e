/*
 * signature.c — the C type of a compiled function, read from a string.
 *
 * em_compile cannot see the C type of the function it wraps, so the user
 * writes it out the way C would: "tensor(tensor, tensor, int, float)", or
 * "void(tensor, tensor *, tensor *)" for a function with several outputs that
 * it writes through out-parameters. fe_sig_parse turns that string into an
 * fe_sig (the return type, the argument types and how many of each kind); the
 * closure (closure.c), the guards and the tracer all work from the fe_sig.
 *
 * The grammar is tiny, so this is a hand-written lexer and recursive-descent
 * parser rather than anything general:
 *
 *     signature := type "(" params ")" <end of input>
 *     params    := "void" | <nothing> | type { "," type }
 *     type      := "tensor" [ "*" ] | "int" | "int64_t" | "float" | "double" | "void"
 *
 * Tokens are identifiers and the punctuation * ( ) ,; whitespace between
 * them is free, so "tensor*", "tensor *" and " tensor  * " are one type. The
 * rules the grammar leaves to checks: the return type is tensor or void; void
 * is an argument type only when it stands alone in the parentheses; "tensor *"
 * out-parameters need a void return, and a void return needs at least one of
 * them (a function must produce something); at most FE_MAX_ARGS arguments.
 * "()" is accepted as "(void)", as in C23 and C++.
 *
 * Invariants: a failed parse leaves *sig untouched and sets exactly one
 * message, `em_compile: signature "<text>": column <n>: <what>`, where n is the
 * 1-based column of the offending token and <what> names that token (or "end
 * of input"). A successful parse gives an fe_sig whose counts add up to nargs
 * and that fe_sig_format writes back in one canonical spelling.
 */
#include "frontend.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

enum {
    ECHO_MAX = 240, /* longest signature text repeated in a message */
    TOKEN_MAX = 40, /* longest token repeated in a message */
};

typedef enum tok_kind {
    TK_IDENT,  /* [A-Za-z_\x80-\xff][A-Za-z0-9_\x80-\xff]* */
    TK_STAR,   /* * */
    TK_LPAREN, /* ( */
    TK_RPAREN, /* ) */
    TK_COMMA,  /* , */
    TK_END,    /* end of input */
    TK_OTHER,  /* any other byte: always an error */
} tok_kind;

typedef struct token {
    tok_kind kind; /* what it is */
    int pos;       /* byte offset of its first character in the text */
    int len;       /* bytes */
} token;

typedef struct parser {
    const char *text; /* the whole signature */
    int pos;          /* where the lexer continues */
    token tok;        /* the current token */
    fe_sig sig;       /* built here, copied out only on success */
} parser;

static const struct {
    const char *name;
    fe_type type;
} type_names[] = {
    {"tensor", FE_TENSOR}, {"int", FE_INT},       {"int64_t", FE_INT64},
    {"float", FE_FLOAT},   {"double", FE_DOUBLE}, {"void", FE_VOID},
};

/* ---- lexer ------------------------------------------------------------------------- */

/* Bytes >= 0x80 count as identifier characters, so a name with UTF-8 in it
 * ("tensör") is reported whole as an unknown type rather than cut short. */
static int is_ident_start(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           (unsigned char)c >= 0x80;
}

static int is_ident_char(char c) { return is_ident_start(c) || (c >= '0' && c <= '9'); }

static int is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static void lex_next(parser *p) {
    const char *s = p->text;
    while (is_space(s[p->pos])) p->pos++;
    token t = {TK_OTHER, p->pos, 1};
    char c = s[p->pos];
    if (c == '\0') {
        t.kind = TK_END;
        t.len = 0;
    } else if (is_ident_start(c)) {
        t.kind = TK_IDENT;
        while (is_ident_char(s[t.pos + t.len])) t.len++;
    } else if (c == '*') {
        t.kind = TK_STAR;
    } else if (c == '(') {
        t.kind = TK_LPAREN;
    } else if (c == ')') {
        t.kind = TK_RPAREN;
    } else if (c == ',') {
        t.kind = TK_COMMA;
    }
    p->pos = t.pos + t.len;
    p->tok = t;
}

static int tok_is(const parser *p, const token *t, const char *word) {
    return t->kind == TK_IDENT && (size_t)t->len == strlen(word) &&
           memcmp(p->text + t->pos, word, (size_t)t->len) == 0;
}

/* The token as a message names it: "foo" in quotes, a control byte as
 * "\xNN", or end of input. */
static const char *tok_describe(const parser *p, const token *t, char *buf, size_t cap) {
    if (t->kind == TK_END) return "end of input";
    unsigned char c = (unsigned char)p->text[t->pos];
    if (t->kind == TK_OTHER && (c < 0x20 || c == 0x7f)) {
        snprintf(buf, cap, "\"\\x%02x\"", c);
    } else if (t->len > TOKEN_MAX) {
        snprintf(buf, cap, "\"%.*s...\"", TOKEN_MAX - 3, p->text + t->pos);
    } else {
        snprintf(buf, cap, "\"%.*s\"", t->len, p->text + t->pos);
    }
    return buf;
}

/* ---- errors ------------------------------------------------------------------------ */

/* Sets `em_compile: signature "<text>": column <n>: <fmt...>` with n the column
 * of `at`; returns -1. */
__attribute__((format(printf, 3, 4)))
static int sig_error(const parser *p, const token *at, const char *fmt, ...) {
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    int n = (int)strlen(p->text);
    int echo = n > ECHO_MAX ? ECHO_MAX - 3 : n;
    return rt_error("em_compile: signature \"%.*s%s\": column %d: %s", echo, p->text,
                    n > ECHO_MAX ? "..." : "", at->pos + 1, what);
}

/* "expected <what>, got <current token>". */
static int expected(const parser *p, const char *what) {
    char buf[TOKEN_MAX + 8];
    return sig_error(p, &p->tok, "expected %s, got %s", what,
                     tok_describe(p, &p->tok, buf, sizeof buf));
}

/* ---- parser ------------------------------------------------------------------------ */

/* type := "tensor" ["*"] | "int" | "int64_t" | "float" | "double" | "void".
 * On success *out is the type and *start the token it began with. */
static int parse_type(parser *p, fe_type *out, token *start) {
    *start = p->tok;
    if (p->tok.kind != TK_IDENT) return expected(p, "a type");
    int found = -1;
    for (size_t i = 0; i < sizeof type_names / sizeof type_names[0]; i++)
        if (tok_is(p, &p->tok, type_names[i].name)) found = (int)i;
    if (found < 0) {
        char buf[TOKEN_MAX + 8];
        return sig_error(p, &p->tok,
                         "unknown type %s (the types are tensor, tensor *, int, int64_t, "
                         "float, double and void)",
                         tok_describe(p, &p->tok, buf, sizeof buf));
    }
    fe_type t = type_names[found].type;
    lex_next(p);
    if (p->tok.kind == TK_STAR) {
        if (t != FE_TENSOR)
            return sig_error(p, &p->tok, "\"%s *\" is not a type: only tensor may be "
                             "followed by \"*\"", type_names[found].name);
        t = FE_TENSOR_OUT;
        lex_next(p);
        if (p->tok.kind == TK_STAR)
            return sig_error(p, &p->tok, "\"tensor **\" is not a type: an out-parameter "
                             "is \"tensor *\"");
    }
    *out = t;
    return 0;
}

/* One argument type, checked against what came before it. */
static int parse_arg(parser *p) {
    fe_sig *s = &p->sig;
    fe_type t;
    token start;
    if (s->nargs == FE_MAX_ARGS && p->tok.kind == TK_IDENT) {
        char buf[TOKEN_MAX + 8];
        return sig_error(p, &p->tok, "too many arguments (at most %d), got %s", FE_MAX_ARGS,
                         tok_describe(p, &p->tok, buf, sizeof buf));
    }
    if (parse_type(p, &t, &start)) return -1;
    if (t == FE_VOID)
        return sig_error(p, &start, "\"void\" is not an argument type (\"(void)\" alone "
                         "means no arguments)");
    if (t == FE_TENSOR_OUT && s->ret != FE_VOID)
        return sig_error(p, &start, "an out-parameter \"tensor *\" needs a void return "
                         "(this signature returns tensor)");
    s->args[s->nargs++] = t;
    if (t == FE_TENSOR) s->n_tensors++;
    else if (t == FE_TENSOR_OUT) s->n_outs++;
    else s->n_scalars++;
    return 0;
}

/* params := "void" | <nothing> | type { "," type }, up to and including ")". */
static int parse_params(parser *p) {
    if (p->tok.kind == TK_RPAREN) { /* "()" */
        lex_next(p);
        return 0;
    }
    if (tok_is(p, &p->tok, "void")) {
        parser look = *p; /* "(void)" or "(void *...)" or "(void, ...)" */
        lex_next(&look);
        if (look.tok.kind == TK_RPAREN) {
            *p = look;
            lex_next(p);
            return 0;
        }
        if (look.tok.kind == TK_END) return expected(&look, "\")\"");
    }
    for (;;) {
        if (parse_arg(p)) return -1;
        if (p->tok.kind == TK_RPAREN) break;
        if (p->tok.kind != TK_COMMA) return expected(p, "\",\" or \")\"");
        lex_next(p);
    }
    lex_next(p);
    return 0;
}

static int parse_signature(parser *p) {
    token ret_tok;
    fe_type ret;
    lex_next(p);
    if (parse_type(p, &ret, &ret_tok)) return -1;
    if (ret != FE_TENSOR && ret != FE_VOID) {
        char name[TOKEN_MAX + 8];
        if (ret == FE_TENSOR_OUT) snprintf(name, sizeof name, "\"tensor *\"");
        else tok_describe(p, &ret_tok, name, sizeof name);
        return sig_error(p, &ret_tok, "the return type must be tensor or void, got %s", name);
    }
    p->sig.ret = ret;
    if (p->tok.kind != TK_LPAREN) return expected(p, "\"(\"");
    lex_next(p);
    if (parse_params(p)) return -1;
    if (p->tok.kind != TK_END) return expected(p, "end of input");
    if (ret == FE_VOID && p->sig.n_outs == 0)
        return sig_error(p, &ret_tok, "a void return needs at least one \"tensor *\" "
                         "out-parameter");
    return 0;
}

int fe_sig_parse(const char *text, fe_sig *sig) {
    if (!text) return rt_error("em_compile: signature is NULL");
    if (!sig) return rt_error("em_compile: signature \"%s\": no fe_sig to parse into", text);
    parser p = {.text = text};
    if (parse_signature(&p)) return -1;
    *sig = p.sig;
    return 0;
}

/* ---- formatting -------------------------------------------------------------------- */

static const char *type_spelling(fe_type t) {
    switch (t) {
    case FE_VOID: return "void";
    case FE_TENSOR: return "tensor";
    case FE_TENSOR_OUT: return "tensor *";
    case FE_INT: return "int";
    case FE_INT64: return "int64_t";
    case FE_FLOAT: return "float";
    case FE_DOUBLE: return "double";
    }
    return "?";
}

/* Appends s at *len, never past cap - 1; buf stays NUL-terminated. */
static void append(char *buf, size_t cap, size_t *len, const char *s) {
    size_t n = strlen(s);
    if (*len + 1 >= cap) return;
    if (n > cap - 1 - *len) n = cap - 1 - *len;
    memcpy(buf + *len, s, n);
    *len += n;
    buf[*len] = '\0';
}

char *fe_sig_format(const fe_sig *sig, char *buf, size_t cap) {
    EM_ASSERT(sig && (buf || cap == 0));
    if (cap == 0) return buf;
    size_t len = 0;
    buf[0] = '\0';
    append(buf, cap, &len, type_spelling(sig->ret));
    append(buf, cap, &len, "(");
    if (sig->nargs == 0) append(buf, cap, &len, "void");
    for (int i = 0; i < sig->nargs; i++) {
        if (i) append(buf, cap, &len, ", ");
        append(buf, cap, &len, type_spelling(sig->args[i]));
    }
    append(buf, cap, &len, ")");
    return buf;
}
