from __future__ import annotations

import pytest

from registrator.mapping.template import TemplateError, parse

DATA = {
    "Id": "e20f9c1a76565d62ae24a3bb877b17b862b6eab94f4e95a0e07ccf25087aaf4f",
    "Name": "/web.1",
    "Config": {
        "Labels": {"com.amazonaws.ecs.task-arn": "arn:aws:ecs:us-east-1:1:task/368f4403", "az": "a"},
        "Env": ["ENVIRONMENT=test", "SERVICE_8105_NAME=foo", "HOME=/root", "SERVICE_9404_NAME=bar"],
        "Hostname": "e20f9c1a7656",
    },
    "State": {"Running": True},
}


@pytest.mark.parametrize(
    ("template", "output"),
    [
        ('prod,{{mIndex "com.amazonaws.ecs.task-arn" .Config.Labels}}', "prod,arn:aws:ecs:us-east-1:1:task/368f4403"),
        ('az-{{mIndex "missing" .Config.Labels}}', "az-"),
        ("{{strSlice .ID 0 12}}", "e20f9c1a7656"),
        ("{{strSlice .ID 60}}", "af4f"),
        ('[{{strSlice "abc" 3}}|{{strSlice "abc" 5}}|{{strSlice "abc" 1 3}}|{{strSlice "abc" 1 5}}]', "[|abc|bc|abc]"),
        ('[{{strSlice "abcd" 3 1}}|{{strSlice "abcd" 2 2}}|{{strSlice "abcd" 0 2}}]', "[d||ab]"),
        ('{{replace 0 "=" "" "=foo="}}', "=foo="),
        ("{{sIndex 0 .Config.Env}},{{sIndex -1 .Config.Env}},{{sIndex 99 .Config.Env}}",
         "ENVIRONMENT=test,SERVICE_9404_NAME=bar,SERVICE_9404_NAME=bar"),
        ('{{splitIndex -1 "/" (mIndex "com.amazonaws.ecs.task-arn" .Config.Labels)}}', "368f4403"),
        ('{{.Config.Labels | mIndex "az" | toUpper}}', "A"),
        ('{{toLower "FoO"}}', "foo"),
        ('{{replace -1 "=" "" "=foo="}}', "foo"),
        ('{{replace 1 "=" "" "=foo="}}', "foo="),
        ('{{join ";" (split "," "a,b")}}', "a;b"),
        ('{{matchFirstElement "^SERVICE_" .Config.Env}}', "SERVICE_8105_NAME=foo"),
        ('{{join "," (matchAllElements "^SERVICE_" .Config.Env)}}', "SERVICE_8105_NAME=foo,SERVICE_9404_NAME=bar"),
        ('{{index .Config.Labels "az"}}', "a"),
        ('[{{index .Config.Labels "missing"}}{{index .Config.Labels "missing" | toUpper}}]', "[]"),
        ("{{index .Config.Env 0}},{{index .Config.Env 3}}", "ENVIRONMENT=test,SERVICE_9404_NAME=bar"),
        ("{{.Name}} {{.State.Running}} {{.Config.Hostname}}", "/web.1 true e20f9c1a7656"),
        ("a {{- /* comment */ -}} b", "ab"),
        ("{{`raw`}}", "raw"),
        ("plain,tags", "plain,tags"),
    ],
)
def test_rendering(template, output):
    assert parse(template).render(DATA) == output


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ('{{httpGet "http://169.254.169.254/latest/meta-data/local-ipv4"}}', "httpGet is not supported"),
        ('{{jsonParse .X "a::b"}}', "jsonParse is not supported"),
        ("{{if .ID}}x{{end}}", "unsupported function or keyword 'if'"),
        ("{{$x := .ID}}", "unsupported syntax"),
        ("{{.ID", "unbalanced"),
        ("{{nope .ID}}", "unsupported function"),
        ('{{mIndex "a" (toUpper "b"}}', "missing '\\)'"),
    ],
)
def test_unsupported_templates_are_refused_at_parse_time(template, message):
    with pytest.raises(TemplateError, match=message):
        parse(template)


def test_render_errors_are_template_errors():
    with pytest.raises(TemplateError):
        parse("{{sIndex 0 .Config.Nope}}").render(DATA)


@pytest.mark.parametrize(("key", "message"), [("4", "index 4 out of range"), ("-1", "index -1 out of range"),
                                              ('"a"', "index 'a' out of range")],
                         ids=["past-the-end", "negative", "not-a-number"])
def test_index_of_a_list_outside_it_is_an_error_naming_the_key(key, message):
    """As Go's `index`: no wrap-around from the end, no key that is not a number."""
    with pytest.raises(TemplateError, match=f"^index: {message}$"):
        parse(f"{{{{index .Config.Env {key}}}}}").render(DATA)


@pytest.mark.parametrize(
    ("literal", "text"),
    [
        (r'"\x2c"', ","),
        (r'"\u00e9"', "é"),
        (r'"\U0001F600"', "😀"),
        (r'"\054"', ","),
        (r'"\xc3\xa9"', "é"),
        (r'"\a\b\f\n\r\t\v\\\""', '\a\b\f\n\r\t\v\\"'),
        ('"tab\there"', "tab\there"),
    ],
    ids=["hex", "u", "U", "octal", "hex-bytes-of-utf8", "single-letter-escapes", "literal-tab"],
)
def test_go_string_escapes(literal, text):
    assert parse("{{" + literal + "}}").render(DATA) == text


@pytest.mark.parametrize(
    ("literal", "message"),
    [
        (r'"\q"', r"unknown escape sequence '\\\\q'"),
        (r'"\x2"', r"unknown escape sequence '\\\\x'"),
        (r'"\400"', "octal escape value 256 > 255"),
        (r'"\ud800"', "not a Unicode code point"),
        (r'"\U00110000"', "not a Unicode code point"),
        (r'"\xff"', "not valid UTF-8"),
        ('"\udcff"', "not valid UTF-8"),
        ('"a\nb"', "newline in string"),
        ("\"\\'\"", r"unknown escape sequence"),
    ],
    ids=["unknown", "short-hex", "octal-over-255", "surrogate", "past-unicode", "invalid-utf8", "undecodable-argument",
         "newline", "single-quote"],
)
def test_invalid_go_strings_are_template_errors_naming_the_template(literal, message):
    with pytest.raises(TemplateError, match=message) as raised:
        parse("x,{{" + literal + "}}")
    assert str(raised.value).startswith("template 'x,{{")


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ('{{replace 99999999999999999999 "a" "b" .Name}}', "99999999999999999999 is outside Go's int64 range"),
        ('{{replace 9223372036854775808 "a" "b" .Name}}', "9223372036854775808 is outside Go's int64 range"),
        ("{{strSlice .ID " + "9" * 5000 + "}}", "is outside Go's int64 range"),
        ("{{" + "(" * 3000 + ".Name" + ")" * 3000 + "}}", "parentheses nested deeper than 32"),
        ("{{" + "(" * 33 + ".Name" + ")" * 33 + "}}", "parentheses nested deeper than 32"),
        ('{{matchFirstElement (mIndex "rx" .Config.Labels) .Config.Env}}', "matchFirstElement: the pattern must be a string "
                                                                           "literal"),
        ('{{matchAllElements "(" .Config.Env}}', "matchAllElements: bad pattern '\\(': missing \\), unterminated subpattern"),
        ('{{matchAllElements "a{99999999999}" .Config.Env}}', "matchAllElements: bad pattern 'a\\{99999999999}': the repetition "
                                                              "number is too large"),
        ('{{matchFirstElement "' + "(" * 1000 + ")" * 1000 + '" .Config.Env}}', "matchFirstElement: bad pattern '\\(\\(\\(.*: "
                                                                                "maximum recursion depth exceeded"),
    ],
    ids=["past-int64", "int64-max-plus-one", "too-many-digits", "deep-nesting", "one-level-too-deep", "pattern-from-data",
         "bad-pattern", "pattern-repetition-too-large", "pattern-nested-too-deep"],
)
def test_what_a_template_may_compute_is_bounded_at_parse_time(template, message):
    with pytest.raises(TemplateError, match=message):
        parse(template)


def test_bounds_that_still_parse():
    assert parse('{{replace -9223372036854775808 "/" "-" .Name}}').render(DATA) == "-web.1"
    assert parse("{{" + "(" * 32 + ".Name" + ")" * 32 + "}}").render(DATA) == "/web.1"


LABELS = {**DATA, "Config": {"Labels": {"n": "99999999999999999999", "big": "x" * 5000, "commas": "," * 5000}}}


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ('{{replace (mIndex "n" .Config.Labels) "a" "b" .Name}}', "replace: '99999999999999999999' is not an integer"),
        ('{{strSlice .Name (mIndex "n" .Config.Labels)}}', "strSlice: '99999999999999999999' is not an integer"),
        ('{{replace -1 "" "xx" .Config.Labels.big}}', "replace: the result would be longer than 8192 characters"),
        ('{{join "long separator" (split "," .Config.Labels.commas)}}', "join: the result would be longer than 8192 characters"),
        ("{{.Config.Labels.big}},{{.Config.Labels.big}}", "the rendered text is longer than 8192 characters"),
        ('{{mIndex "a" .Name}}', r"mIndex: wrong type of argument \(string, string\)"),
    ],
    ids=["count-from-data", "bound-from-data", "replace-grows", "join-grows", "output", "wrong-type"],
)
def test_any_failure_while_rendering_is_a_template_error(template, message):
    with pytest.raises(TemplateError, match=message):
        parse(template).render(LABELS)


def test_nested_replaces_stop_at_the_bound_instead_of_growing_exponentially():
    nested = '"ab"'
    for _ in range(30):
        nested = f'(replace -1 "" "ab" {nested})'
    with pytest.raises(TemplateError, match="longer than 8192"):
        parse("{{" + nested + "}}").render(DATA)


@pytest.mark.parametrize(
    ("template", "data"),
    [
        ('{{replace -1 "a" "b" .Long}}', {"Long": "a" * 8000}),
        ('{{join "," .Items}}', {"Items": ["a" * 4095, "b" * 4096]}),
        ('{{join "," .Items}}', {"Items": ["a" * 8192]}),
    ],
    ids=["replace-same-length", "join-two-to-the-limit", "join-one-at-the-limit"],
)
def test_results_up_to_the_limit_are_rendered(template, data):
    assert len(parse(template).render(data)) <= 8192


def test_a_join_one_past_the_limit_is_an_error():
    with pytest.raises(TemplateError, match="longer than 8192"):
        parse('{{join "," .Items}}').render({"Items": ["a" * 4096, "b" * 4096]})


def test_a_pattern_function_without_its_pattern_is_refused_at_parse_time():
    with pytest.raises(TemplateError, match="the pattern must be a string literal"):
        parse("{{matchFirstElement}}")


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ }}", "template '{{ }}': empty command"),
        ("{{ .ID ) }}", "template '{{ .ID ) }}': unexpected ')'"),
        ("{{ | .ID }}", "template '{{ | .ID }}': unexpected '|'"),
        ("{{ toUpper toLower }}", "template '{{ toUpper toLower }}': function 'toLower' used as an argument needs parentheses"),
        ("{{ (nope) }}", "template '{{ (nope) }}': unsupported function or keyword 'nope'"),
        ("{{ toUpper (nope) }}", "template '{{ toUpper (nope) }}': unsupported function or keyword 'nope'"),
        ('{{ matchAllElements "(" .Env }}', "template '{{ matchAllElements \"(\" .Env }}': matchAllElements: bad pattern '(': "
                                             "missing ), unterminated subpattern at position 0"),
        ("{{ $x }}", "template '{{ $x }}': cannot parse '$x' (unsupported syntax)"),
        ("{{/* x}}", "template '{{/* x}}': cannot parse '/* x' (unsupported syntax)"),
        ("a}}b", "template 'a}}b': unbalanced braces"),
        ("{{ 00000000000000000001 }}", "template '{{ 00000000000000000001 }}': 00000000000000000001 is outside Go's int64 range"),
        ('{{ "a\nb" }}', "template '{{ \"a\\nb\" }}': string '\"a\\nb\"': newline in string"),
        (r'{{ "\xff" }}', "template '{{ \"\\\\xff\" }}': string '\"\\\\xff\"': not valid UTF-8"),
        (r'{{ "\udfff" }}', "template '{{ \"\\\\udfff\" }}': string '\"\\\\udfff\"': escape '\\\\udfff' is not a Unicode code "
                            "point"),
    ],
    ids=["empty-command", "stray-paren", "leading-pipe", "function-as-argument", "in-parentheses", "argument-in-parentheses",
         "bad-pattern", "variable", "unclosed-comment", "closing-braces-alone", "twenty-digits", "newline", "invalid-utf8",
         "last-surrogate"],
)
def test_parse_errors_name_the_template_and_the_problem_exactly(template, message):
    with pytest.raises(TemplateError) as raised:
        parse(template)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("template", "data", "output"),
    [
        ("{{.Labels}}", {"Labels": {"b": "2", "a": {"c": ["x", True]}}}, "map[a:map[c:[x true]] b:2]"),
        ("{{.Args}}", {"Args": ["-v", "run", False]}, "[-v run false]"),
        ("{{.Args}}|{{.Labels}}", {"Args": [], "Labels": {}}, "[]|map[]"),
        ("[{{.Nothing}}][{{.Missing}}][{{.Name.Deeper}}]", {"Nothing": None, "Name": "/web"}, "[][][]"),
        ("{{toUpper .Missing}}", {}, ""),
        ("{{/* one */}}a{{/* two */}}{{.Name}}", {"Name": "n"}, "an"),
        ('{{ "\\x41bc" }}{{ "a\\u00e9" }}', {}, "Abcaé"),
        ('{{ "\\U0010FFFF" }}{{ "\\uE000" }}', {}, "\U0010ffff\ue000"),
        ("{{sIndex -5 .Items}}{{sIndex -3 .Items}}{{sIndex -1 .Items}}", {"Items": ["a", "b", "c"]}, "aac"),
        ("{{sIndex 9223372036854775807 .Items}}", {"Items": ["a", "b"]}, "b"),
        ("{{strSlice .Name 9223372036854775807}}", {"Name": "web"}, "web"),
    ],
    ids=["nested-map", "list", "empty-list-and-map", "null-missing-and-not-a-map", "missing-to-a-function", "comments",
         "escapes-after-text", "last-code-points", "negative-index-clamps", "int64-max-index", "int64-max-bound"],
)
def test_values_print_as_go_prints_them(template, data, output):
    assert parse(template).render(data) == output


@pytest.mark.parametrize(
    ("template", "data", "message"),
    [
        ("{{ .ID | .Name }}", DATA, "only a function can receive a piped value"),
        ("{{sIndex 0 .Items}}", {"Items": []}, "sIndex: index of an empty list"),
        ('{{join "x" (split "," .Items)}}', {"Items": "a" * 4096 + "," + "b" * 4096}, "join: the result would be longer than "
                                                                                      "8192 characters"),
    ],
    ids=["piped-into-a-field", "empty-list", "join-separator-past-the-limit"],
)
def test_render_errors_say_exactly_what_went_wrong(template, data, message):
    with pytest.raises(TemplateError) as raised:
        parse(template).render(data)
    assert str(raised.value) == message


def test_data_that_fails_to_print_is_a_template_error_naming_the_exception():
    class Unprintable:
        def __str__(self) -> str:
            raise ValueError("cannot print")

    with pytest.raises(TemplateError) as raised:
        parse("{{.Odd}}").render({"Odd": Unprintable()})
    assert str(raised.value) == "ValueError: cannot print"


@pytest.mark.parametrize(("template", "message"), [
    ("{{toUpper}}", "template '{{toUpper}}': toUpper takes 1 argument, 0 given"),
    ('{{toUpper "a" "b"}}', "template '{{toUpper \"a\" \"b\"}}': toUpper takes 1 argument, 2 given"),
    ('{{.Name | replace 1 "a"}}', "template '{{.Name | replace 1 \"a\"}}': replace takes 4 arguments, 3 given"),
    ('{{join}}', "template '{{join}}': join takes 2 arguments, 0 given"),
], ids=["none", "too-many", "too-few-with-the-piped-one", "plural"])
def test_a_function_given_the_wrong_number_of_arguments_is_refused_at_parse_time(template, message):
    with pytest.raises(TemplateError) as refused:
        parse(template)
    assert str(refused.value) == message


@pytest.mark.parametrize(("template", "data", "message"), [
    ('{{mIndex "a" .Name}}', {"Name": "/web"}, "mIndex: wrong type of argument (string, string)"),
    ("{{split .Items .Name}}", {"Items": ["a"], "Name": "x"}, "split: wrong type of argument (slice, string)"),
], ids=["map-expected", "separator-expected"])
def test_a_wrong_type_at_render_time_says_so_in_gos_words_not_pythons(template, data, message):
    with pytest.raises(TemplateError) as raised:
        parse(template).render(data)
    assert str(raised.value) == message
