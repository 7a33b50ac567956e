/*
 * test_signature.c — reading a compiled function's C type from a string.
 *
 * Covers every form fe_sig_parse accepts (whitespace anywhere between tokens,
 * "tensor*" and "tensor *", a void return with out-parameters, "(void)" and
 * "()" for no arguments, every scalar type, exactly FE_MAX_ARGS arguments)
 * with the counts it derives, and every error with its exact message: the
 * column of the offending token and the token itself (or end of input). A
 * failed parse must leave the caller's fe_sig untouched. fe_sig_format is
 * checked for its canonical spelling, for truncation into a short buffer, and
 * for round trips (parse, format, parse again gives the same fe_sig).
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include "frontend.h"

/* ---- helpers ------------------------------------------------------------------------ */

static fe_sig parse_ok(const char *text) {
    fe_sig s;
    memset(&s, 0, sizeof s);
    cr_assert_eq(fe_sig_parse(text, &s), 0, "parsing \"%s\" failed: %s", text, em_last_error());
    cr_assert_eq(s.n_tensors + s.n_outs + s.n_scalars, s.nargs, "counts of \"%s\" do not add up",
                 text);
    return s;
}

/* text must fail with exactly the message want, leaving the fe_sig as it was. */
static void expect_error(const char *text, const char *want) {
    fe_sig s, before;
    memset(&s, 0x5a, sizeof s);
    before = s;
    em_clear_error();
    cr_expect_eq(fe_sig_parse(text, &s), -1, "\"%s\" was accepted", text ? text : "(null)");
    cr_expect_str_eq(em_last_error(), want);
    cr_expect(memcmp(&s, &before, sizeof s) == 0, "a failed parse of \"%s\" wrote the fe_sig",
              text ? text : "(null)");
}

static void expect_args(const fe_sig *s, int n, const fe_type *want) {
    cr_assert_eq(s->nargs, n, "nargs %d, want %d", s->nargs, n);
    for (int i = 0; i < n; i++)
        cr_expect_eq(s->args[i], want[i], "argument %d is type %d, want %d", i + 1, s->args[i],
                     want[i]);
}

static void expect_same_sig(const fe_sig *a, const fe_sig *b, const char *text) {
    cr_expect_eq(a->ret, b->ret, "%s: return types differ", text);
    cr_expect_eq(a->n_tensors, b->n_tensors, "%s", text);
    cr_expect_eq(a->n_outs, b->n_outs, "%s", text);
    cr_expect_eq(a->n_scalars, b->n_scalars, "%s", text);
    expect_args(a, b->nargs, b->args);
}

/* "tensor(" then n copies of `arg` separated by ", ", then ")". */
static void repeated(char *buf, size_t cap, const char *ret, const char *arg, int n) {
    size_t k = (size_t)snprintf(buf, cap, "%s(", ret);
    for (int i = 0; i < n; i++) k += (size_t)snprintf(buf + k, cap - k, i ? ", %s" : "%s", arg);
    snprintf(buf + k, cap - k, ")");
}

#define PREFIX(text) "em_compile: signature \"" text "\": "
#define TYPES_HINT "(the types are tensor, tensor *, int, int64_t, float, double and void)"

/* ---- accepted forms ------------------------------------------------------------------- */

Test(signature, accepts_a_tensor_function_of_tensors_and_scalars) {
    fe_sig s = parse_ok("tensor(tensor, tensor, int, float)");
    cr_expect_eq(s.ret, FE_TENSOR);
    expect_args(&s, 4, (fe_type[]){FE_TENSOR, FE_TENSOR, FE_INT, FE_FLOAT});
    cr_expect_eq(s.n_tensors, 2);
    cr_expect_eq(s.n_outs, 0);
    cr_expect_eq(s.n_scalars, 2);
}

Test(signature, accepts_every_scalar_type) {
    fe_sig s = parse_ok("tensor(int, int64_t, float, double, tensor)");
    expect_args(&s, 5, (fe_type[]){FE_INT, FE_INT64, FE_FLOAT, FE_DOUBLE, FE_TENSOR});
    cr_expect_eq(s.n_scalars, 4);
    cr_expect_eq(s.n_tensors, 1);
}

Test(signature, treats_whitespace_between_tokens_as_free) {
    const char *forms[] = {
        "tensor(tensor,int64_t,double)",
        "tensor (tensor, int64_t, double)",
        "  tensor ( tensor , int64_t , double )  ",
        "\ttensor\n(\ttensor,\r\nint64_t,\vdouble\f)",
    };
    fe_sig want = parse_ok(forms[0]);
    for (size_t i = 1; i < sizeof forms / sizeof forms[0]; i++) {
        fe_sig s = parse_ok(forms[i]);
        expect_same_sig(&s, &want, forms[i]);
    }
}

Test(signature, reads_tensor_star_with_or_without_spaces_as_an_out_parameter) {
    const char *forms[] = {"void(tensor*)", "void(tensor *)", "void(tensor  *  )",
                           "void(tensor\t*)", "void( tensor*)"};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        fe_sig s = parse_ok(forms[i]);
        cr_expect_eq(s.ret, FE_VOID, "%s", forms[i]);
        expect_args(&s, 1, (fe_type[]){FE_TENSOR_OUT});
        cr_expect_eq(s.n_outs, 1, "%s", forms[i]);
        cr_expect_eq(s.n_tensors, 0, "%s", forms[i]);
    }
}

Test(signature, accepts_a_void_return_with_several_out_parameters) {
    fe_sig s = parse_ok("void(tensor, tensor *, tensor *)");
    cr_expect_eq(s.ret, FE_VOID);
    expect_args(&s, 3, (fe_type[]){FE_TENSOR, FE_TENSOR_OUT, FE_TENSOR_OUT});
    cr_expect_eq(s.n_tensors, 1);
    cr_expect_eq(s.n_outs, 2);
    cr_expect_eq(s.n_scalars, 0);
}

Test(signature, accepts_out_parameters_anywhere_among_the_arguments) {
    fe_sig s = parse_ok("void(tensor *, int, tensor, tensor*, double)");
    expect_args(&s, 5,
                (fe_type[]){FE_TENSOR_OUT, FE_INT, FE_TENSOR, FE_TENSOR_OUT, FE_DOUBLE});
    cr_expect_eq(s.n_outs, 2);
    cr_expect_eq(s.n_tensors, 1);
    cr_expect_eq(s.n_scalars, 2);
}

Test(signature, reads_void_alone_in_the_parentheses_as_no_arguments) {
    const char *forms[] = {"tensor(void)", "tensor( void )", "tensor ( void)", "tensor()",
                           "tensor( )"};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        fe_sig s = parse_ok(forms[i]);
        cr_expect_eq(s.ret, FE_TENSOR, "%s", forms[i]);
        cr_expect_eq(s.nargs, 0, "%s", forms[i]);
        cr_expect_eq(s.n_tensors + s.n_outs + s.n_scalars, 0, "%s", forms[i]);
    }
}

Test(signature, accepts_exactly_the_maximum_number_of_arguments) {
    char text[512];
    repeated(text, sizeof text, "tensor", "tensor", FE_MAX_ARGS);
    fe_sig s = parse_ok(text);
    cr_expect_eq(s.nargs, FE_MAX_ARGS);
    cr_expect_eq(s.n_tensors, FE_MAX_ARGS);
    repeated(text, sizeof text, "void", "tensor*", FE_MAX_ARGS);
    s = parse_ok(text);
    cr_expect_eq(s.n_outs, FE_MAX_ARGS);
}

Test(signature, takes_type_names_only_as_whole_words) {
    expect_error("tensor(integer)",
                 PREFIX("tensor(integer)") "column 8: unknown type \"integer\" " TYPES_HINT);
    expect_error("tensor(int64)",
                 PREFIX("tensor(int64)") "column 8: unknown type \"int64\" " TYPES_HINT);
    expect_error("tensors(tensor)",
                 PREFIX("tensors(tensor)") "column 1: unknown type \"tensors\" " TYPES_HINT);
}

/* ---- errors ------------------------------------------------------------------------- */

Test(signature, rejects_a_null_text) {
    expect_error(NULL, "em_compile: signature is NULL");
}

Test(signature, rejects_a_null_destination) {
    cr_expect_eq(fe_sig_parse("tensor(tensor)", NULL), -1);
    cr_expect_str_eq(em_last_error(),
                     "em_compile: signature \"tensor(tensor)\": no fe_sig to parse into");
}

Test(signature, rejects_an_empty_text_at_the_end_of_input) {
    expect_error("", PREFIX("") "column 1: expected a type, got end of input");
    expect_error("   ", PREFIX("   ") "column 4: expected a type, got end of input");
}

Test(signature, names_the_column_of_an_unknown_type) {
    expect_error("tensor(tensor, flaot)",
                 PREFIX("tensor(tensor, flaot)") "column 16: unknown type \"flaot\" " TYPES_HINT);
    expect_error("long(tensor)",
                 PREFIX("long(tensor)") "column 1: unknown type \"long\" " TYPES_HINT);
    expect_error("tensor(long long)",
                 PREFIX("tensor(long long)") "column 8: unknown type \"long\" " TYPES_HINT);
    expect_error("tensor(em_tensor *)",
                 PREFIX("tensor(em_tensor *)") "column 8: unknown type \"em_tensor\" " TYPES_HINT);
    expect_error("tensor(const tensor)",
                 PREFIX("tensor(const tensor)") "column 8: unknown type \"const\" " TYPES_HINT);
}

Test(signature, shortens_a_very_long_unknown_name_in_the_message) {
    char name[61], text[80], want[512];
    memset(name, 'x', 60);
    name[60] = '\0';
    snprintf(text, sizeof text, "tensor(%s)", name);
    snprintf(want, sizeof want,
             PREFIX("%s") "column 8: unknown type \"%.37s...\" " TYPES_HINT, text, name);
    expect_error(text, want);
}

Test(signature, names_the_column_of_a_missing_type_after_a_comma) {
    expect_error("tensor(tensor,)",
                 PREFIX("tensor(tensor,)") "column 15: expected a type, got \")\"");
    expect_error("tensor(,tensor)",
                 PREFIX("tensor(,tensor)") "column 8: expected a type, got \",\"");
    expect_error("tensor(tensor,,int)",
                 PREFIX("tensor(tensor,,int)") "column 15: expected a type, got \",\"");
    expect_error("tensor(tensor, ",
                 PREFIX("tensor(tensor, ") "column 16: expected a type, got end of input");
    expect_error("(tensor)", PREFIX("(tensor)") "column 1: expected a type, got \"(\"");
}

Test(signature, rejects_a_missing_open_parenthesis) {
    expect_error("tensor", PREFIX("tensor") "column 7: expected \"(\", got end of input");
    expect_error("tensor tensor)",
                 PREFIX("tensor tensor)") "column 8: expected \"(\", got \"tensor\"");
    expect_error("tensor[tensor]", PREFIX("tensor[tensor]") "column 7: expected \"(\", got \"[\"");
}

Test(signature, rejects_a_missing_close_parenthesis) {
    expect_error("tensor(tensor",
                 PREFIX("tensor(tensor") "column 14: expected \",\" or \")\", got end of input");
    expect_error("tensor(",
                 PREFIX("tensor(") "column 8: expected a type, got end of input");
    expect_error("tensor(tensor int)",
                 PREFIX("tensor(tensor int)") "column 15: expected \",\" or \")\", got \"int\"");
    expect_error("tensor(void",
                 PREFIX("tensor(void") "column 12: expected \")\", got end of input");
}

Test(signature, rejects_an_extra_close_parenthesis) {
    expect_error("tensor(tensor))",
                 PREFIX("tensor(tensor))") "column 15: expected end of input, got \")\"");
    expect_error("tensor)(tensor)",
                 PREFIX("tensor)(tensor)") "column 7: expected \"(\", got \")\"");
}

Test(signature, rejects_trailing_garbage) {
    expect_error("tensor(tensor) x",
                 PREFIX("tensor(tensor) x") "column 16: expected end of input, got \"x\"");
    expect_error("tensor(tensor);",
                 PREFIX("tensor(tensor);") "column 15: expected end of input, got \";\"");
    expect_error("tensor(tensor)(int)",
                 PREFIX("tensor(tensor)(int)") "column 15: expected end of input, got \"(\"");
}

Test(signature, names_a_non_printing_byte_by_its_code) {
    expect_error("tensor(tensor\x01)",
                 PREFIX("tensor(tensor\x01)") "column 14: expected \",\" or \")\", got \"\\x01\"");
    expect_error("tensor(tensor\x7f)",
                 PREFIX("tensor(tensor\x7f)") "column 14: expected \",\" or \")\", got \"\\x7f\"");
}

Test(signature, reports_a_name_with_utf8_in_it_whole) {
    expect_error("tensor(tens\xc3\xb6r)",
                 PREFIX("tensor(tens\xc3\xb6r)") "column 8: unknown type \"tens\xc3\xb6r\" "
                     TYPES_HINT);
}

Test(signature, rejects_a_pointer_to_a_pointer) {
    expect_error("void(tensor **)",
                 PREFIX("void(tensor **)") "column 14: \"tensor **\" is not a type: an "
                                           "out-parameter is \"tensor *\"");
    expect_error("void(tensor* *)",
                 PREFIX("void(tensor* *)") "column 14: \"tensor **\" is not a type: an "
                                           "out-parameter is \"tensor *\"");
}

Test(signature, rejects_a_pointer_to_anything_but_tensor) {
    expect_error("void(tensor *, int *)",
                 PREFIX("void(tensor *, int *)") "column 20: \"int *\" is not a type: only "
                                                 "tensor may be followed by \"*\"");
    expect_error("tensor(void *)",
                 PREFIX("tensor(void *)") "column 13: \"void *\" is not a type: only tensor "
                                          "may be followed by \"*\"");
}

Test(signature, rejects_void_as_an_argument_beside_others) {
    const char *hint = "\"void\" is not an argument type (\"(void)\" alone means no arguments)";
    char want[256];
    snprintf(want, sizeof want, PREFIX("tensor(tensor, void)") "column 16: %s", hint);
    expect_error("tensor(tensor, void)", want);
    snprintf(want, sizeof want, PREFIX("tensor(void, tensor)") "column 8: %s", hint);
    expect_error("tensor(void, tensor)", want);
    snprintf(want, sizeof want, PREFIX("void(tensor *, void)") "column 16: %s", hint);
    expect_error("void(tensor *, void)", want);
}

Test(signature, rejects_out_parameters_with_a_tensor_return) {
    expect_error("tensor(tensor, tensor *)",
                 PREFIX("tensor(tensor, tensor *)") "column 16: an out-parameter \"tensor *\" "
                                                    "needs a void return (this signature "
                                                    "returns tensor)");
}

Test(signature, rejects_a_void_return_without_out_parameters) {
    const char *what = "a void return needs at least one \"tensor *\" out-parameter";
    char want[256];
    snprintf(want, sizeof want, PREFIX("void(tensor)") "column 1: %s", what);
    expect_error("void(tensor)", want);
    snprintf(want, sizeof want, PREFIX("void(void)") "column 1: %s", what);
    expect_error("void(void)", want);
    snprintf(want, sizeof want, PREFIX("  void()") "column 3: %s", what);
    expect_error("  void()", want);
}

Test(signature, rejects_a_return_type_that_is_not_tensor_or_void) {
    expect_error("int(tensor)",
                 PREFIX("int(tensor)") "column 1: the return type must be tensor or void, got "
                                       "\"int\"");
    expect_error("double(tensor)",
                 PREFIX("double(tensor)") "column 1: the return type must be tensor or void, "
                                          "got \"double\"");
    expect_error("tensor *(tensor)",
                 PREFIX("tensor *(tensor)") "column 1: the return type must be tensor or void, "
                                            "got \"tensor *\"");
}

Test(signature, rejects_more_than_the_maximum_number_of_arguments) {
    char text[512], want[1024];
    repeated(text, sizeof text, "tensor", "int", FE_MAX_ARGS + 1);
    /* "tensor(" is 7 columns and each "int, " 5, so the 33rd int is at column 168. */
    snprintf(want, sizeof want,
             "em_compile: signature \"%s\": column %d: too many arguments (at most %d), got "
             "\"int\"",
             text, 7 + 5 * FE_MAX_ARGS + 1, FE_MAX_ARGS);
    expect_error(text, want);
}

Test(signature, shortens_a_very_long_text_in_the_message) {
    char text[400], want[600];
    int n = snprintf(text, sizeof text, "tensor(");
    while (n < 300) text[n++] = ' ';
    text[n] = '\0';
    snprintf(text + n, sizeof text - (size_t)n, "x)");
    snprintf(want, sizeof want,
             "em_compile: signature \"%.237s...\": column %d: unknown type \"x\" " TYPES_HINT,
             text, n + 1);
    expect_error(text, want);
}

/* ---- formatting ------------------------------------------------------------------------ */

Test(signature, formats_the_canonical_spelling) {
    char buf[128];
    struct { const char *in, *out; } cases[] = {
        {"tensor(tensor,tensor,int,float)", "tensor(tensor, tensor, int, float)"},
        {" void ( tensor,int64_t ,tensor*)", "void(tensor, int64_t, tensor *)"},
        {"tensor()", "tensor(void)"},
        {"tensor( void )", "tensor(void)"},
        {"tensor(double,float)", "tensor(double, float)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fe_sig s = parse_ok(cases[i].in);
        cr_expect_eq(fe_sig_format(&s, buf, sizeof buf), buf);
        cr_expect_str_eq(buf, cases[i].out, "formatting \"%s\"", cases[i].in);
    }
}

Test(signature, round_trips_through_format_and_parse) {
    char big[512], buf[512];
    repeated(big, sizeof big, "void", "tensor *", FE_MAX_ARGS);
    const char *texts[] = {
        "tensor(tensor)", "tensor(void)", "void(tensor *)",
        "void(tensor, tensor *, tensor *)", "tensor(tensor, int, int64_t, float, double)",
        "void(double, tensor*, float, tensor, int64_t, tensor *)", big,
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        fe_sig a = parse_ok(texts[i]);
        fe_sig_format(&a, buf, sizeof buf);
        fe_sig b = parse_ok(buf);
        expect_same_sig(&b, &a, texts[i]);
        char again[512];
        cr_expect_str_eq(fe_sig_format(&b, again, sizeof again), buf);
    }
}

Test(signature, truncates_the_format_to_the_buffer) {
    fe_sig s = parse_ok("void(tensor, tensor *)");
    char buf[8];
    memset(buf, '#', sizeof buf);
    fe_sig_format(&s, buf, sizeof buf);
    cr_expect_str_eq(buf, "void(te");
    char one[1] = {'#'};
    fe_sig_format(&s, one, 1);
    cr_expect_eq(one[0], '\0');
    char none[1] = {'#'};
    fe_sig_format(&s, none, 0);
    cr_expect_eq(none[0], '#', "a zero-sized buffer must not be written");
}

Test(signature, formats_the_longest_signature_whole) {
    char text[512], buf[512];
    repeated(text, sizeof text, "void", "tensor *", FE_MAX_ARGS);
    fe_sig s = parse_ok(text);
    fe_sig_format(&s, buf, sizeof buf);
    cr_expect_str_eq(buf, text);
}
