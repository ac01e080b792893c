#!/usr/bin/env python3
"""Writes tests/fixtures/chat/jinja2_cases.json: small templates rendered by Python's jinja2 configured the way
transformers renders chat templates (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loop controls,
its own tojson, raise_exception, strftime_now, {% generation %}). The C renderer must give the same bytes, or
fail where jinja2 fails. Cases marked "strict" are where the C renderer deliberately raises a clear error
although jinja2 renders something (a string filter applied to a list/None/number prints a Python repr into
the prompt in jinja2).

Run from the repo root: python3 scripts/chat_jinja2_fixtures.py  (then node scripts/chat_divergences.mjs adds
what @huggingface/jinja gives for each case, to list where the two renderers disagree)."""
import json
import os
import sys
from datetime import datetime

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


class GenerationTracker(Extension):
    """transformers' AssistantTracker without the tracking: {% generation %} renders its body."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(fmt):
    return datetime.now().strftime(fmt)


def make_env():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTracker, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


MSGS = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi 👋"},
    {"role": "assistant", "content": "Hello!", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"x": 1, "y": "two"}}}]},
    {"role": "user", "content": "Bye"},
]
D = {"b": 2, "a": 1, "items": "shadow", "nested": {"k": [1, 2, {"z": None}]}}

# (name, template, extra variables or None, flag) -- flag "strict": the C renderer raises a clear error instead.
CASES = [
    # ---- whitespace control
    ("ws-trim-blocks", "{% if true %}\nyes\n{% endif %}\nafter", None, None),
    ("ws-lstrip-blocks", "a\n    {% if true %}\n    b\n    {% endif %}\nc", None, None),
    ("ws-lstrip-not-vars", "a\n    {{ 'x' }}\n    b", None, None),
    ("ws-minus", "a   {%- if true -%}   b   {%- endif -%}   c", None, None),
    ("ws-minus-expr", "x\n\n  {{- 'y' -}}  \n\n z", None, None),
    ("ws-plus-disables-lstrip", "a\n    {%+ if true %}b{% endif %}", None, None),
    ("ws-plus-disables-trim", "{% if true +%}\nb{% endif %}", None, None),
    ("ws-comment", "a\n  {# comment #}\nb{#- x -#}  c", None, None),
    ("ws-comment-multiline", "a{# line1\nline2 #}b", None, None),
    ("ws-raw", "{% raw %}{{ not }}{% evaluated %}{% endraw %}!", None, None),
    ("ws-crlf", "a\r\n{% if true %}\r\nb\r\n{% endif %}\r\nc\r\n", None, None),
    ("ws-trailing-newline", "text\n", None, None),
    ("ws-two-trailing-newlines", "text\n\n", None, None),
    ("ws-tabs-lstrip", "a\n\t\t{% if true %}b{% endif %}", None, None),
    ("ws-unicode-space-minus", "a\u3000\u00a0 {%- if true %}b{% endif %}", None, None),
    ("ws-set-line", "{% set x = 1 %}\n{% set y = 2 %}\n{{ x + y }}", None, None),
    ("ws-for-lines", "{% for i in range(3) %}\n  - {{ i }}\n{% endfor %}\n", None, None),
    ("ws-generation", "{% generation %}gen {{ 1 }}{% endgeneration %}!", None, None),
    # ---- literals and printing
    ("print-none-bools", "{{ none }}|{{ None }}|{{ true }}|{{ False }}", None, None),
    ("print-numbers", "{{ 1 }} {{ -2 }} {{ 1.0 }} {{ 1.5 }} {{ 1e20 }} {{ 1e-5 }} {{ 0.1 + 0.2 }} {{ 1_000 }} {{ 10 / 4 }} {{ 2.5e16 }}", None, None),
    ("print-float-edges", "{{ 1e16 }} {{ 1234567890123456.0 }} {{ 0.0001 }} {{ -0.0 }} {{ 3.0 * 1 }} {{ 123456789.125 }}", None, None),
    ("print-list-dict", "{{ [1, 'a', none, true, 1.5] }} {{ {'k': 'v', 'n': [1]} }} {{ (1,) }} {{ (1, 'x') }} {{ () }}", None, None),
    ("print-repr-quotes", "{{ [\"it's\", 'say \"hi\"', 'both \\' \"', 'back\\\\slash', 'tab\\tnl\\n', '\\x01\\x7f', 'é中🎉'] }}", None, None),
    ("print-nested", "{{ d }}", {"d": D}, None),
    ("string-escapes", "{{ 'a\\nb\\tc\\\\d\\'e\\\"f' }}|{{ \"\\u00e9\\x41\\U0001F600\" }}|{{ '\\q' }}|{{ '\\101' }}", None, None),
    ("string-adjacent", "{{ 'a' 'b' \"c\" }}", None, None),
    ("int-literals", "{{ 0x1F }} {{ 0o17 }} {{ 0b101 }} {{ 1_0 }}", None, None),
    # ---- operators
    ("arith-int", "{{ 7 + 3 }} {{ 7 - 10 }} {{ 7 * 3 }} {{ 7 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 2 ** 10 }} {{ 2 ** -1 }}", None, None),
    ("arith-float", "{{ 7.5 // 2 }} {{ -7.5 % 2 }} {{ 2.0 ** 3 }} {{ 1 + 2.0 }} {{ 3 * 0.5 }}", None, None),
    ("arith-bool", "{{ true + 1 }} {{ false * 3 }} {{ -true }}", None, None),
    ("arith-precedence", "{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 2 ** 3 ** 2 }} {{ -2 ** 2 }} {{ 10 - 2 - 3 }} {{ 1 ~ 2 * 3 }} {{ 'a' ~ 1 + 2 }}", None, None),
    ("err-tilde-binds-tighter-than-plus", "{{ 1 + 2 ~ 3 }}", None, None),
    ("str-ops", "{{ 'ab' + 'cd' }} {{ 'ab' * 3 }} {{ 3 * 'x' }} {{ 'n=' ~ 5 ~ none ~ true }} {{ [1] + [2, 3] }} {{ [0] * 3 }}", None, None),
    ("str-percent", "{{ '%s-%d-%05.1f-%x' % ('a', 42, 3.14159, 255) }} {{ '%s' % 'solo' }} {{ '%(a)s!' % {'a': 1} }} {{ '100%%' % () }}", None, None),
    ("compare", "{{ 1 < 2 }} {{ 2 <= 1 }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }} {{ 1 == 1.0 }} {{ true == 1 }} {{ 'a' != 'a' }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 5 }}", None, None),
    ("compare-eq-types", "{{ [1, 2] == [1, 2] }} {{ {'a': 1} == {'a': 1} }} {{ none == none }} {{ (1, 2) == [1, 2] }} {{ 'x' == none }}", None, None),
    ("in-op", "{{ 'b' in 'abc' }} {{ 2 in [1, 2] }} {{ 'a' in {'a': 1} }} {{ 'z' not in 'abc' }} {{ '' in 'x' }} {{ 1.0 in [1] }}", None, None),
    ("and-or-values", "{{ 0 or 'x' }} {{ 'a' and 'b' }} {{ [] or [1] }} {{ none and 1 }} {{ '' or none }} {{ not [] }} {{ not 'a' }}", None, None),
    ("ternary", "{{ 'y' if true else 'n' }} {{ 'y' if false else 'n' }} [{{ 'y' if false }}] {{ 1 if 0 else 2 if 0 else 3 }}", None, None),
    ("not-precedence", "{{ not 1 == 2 }} {{ not true and false }} {{ not none is none }}", None, None),
    ("filter-precedence", "{{ -3|abs }} {{ [1,2,3]|length - 1 }} {{ 'a' ~ 'b'|upper }} {{ 2 * [1,2]|length }}", None, None),
    # ---- variables, attributes, items
    ("attr-item", "{{ m.role }} {{ m['content'] }} {{ m.missing }}|{{ m['missing'] }}|{{ l[0] }} {{ l[-1] }} {{ l.0 }} {{ l[5] }}|{{ s[1] }} {{ s[-1] }}", {"m": MSGS[1], "l": [10, 20, 30], "s": "héllo"}, None),
    ("dict-method-shadow", "{{ d['items'] }} {{ d.items() | list }}", {"d": {"items": "x", "b": 1}}, None),
    ("slices", "{{ l[1:] }} {{ l[:2] }} {{ l[::-1] }} {{ l[-2:] }} {{ l[1:3:1] }} {{ l[::2] }} {{ s[1:4] }} {{ s[::-1] }} {{ s[-3:] }} {{ l[5:] }} {{ l[3:1] }}", {"l": [1, 2, 3, 4, 5], "s": "añb😀cd"}, None),
    ("undefined-print", "[{{ nope }}] [{{ nope|default('dflt') }}] [{{ nope is defined }}] [{{ nope is undefined }}] [{{ nope|length }}]", None, None),
    ("undefined-iter", "{% for x in nope %}{{ x }}{% else %}empty{% endfor %}", None, None),
    ("undefined-concat", "{{ 'a' ~ nope ~ 'b' }}", None, None),
    ("undefined-eq", "{{ nope == nope2 }} {{ nope == none }} {{ nope != 1 }}", None, None),
    ("none-default", "{{ none | default('d') }} {{ '' | default('d', true) }} {{ 0 | d('zero', boolean=true) }}", None, None),
    ("loop-var-outside", "{{ loop is defined }}", None, None),
    # ---- filters
    ("f-trim", "[{{ '  a b \\n\\t' | trim }}] [{{ 'xxaxx' | trim('x') }}] [{{ '\\u3000a\\u00a0' | trim }}]", None, None),
    ("f-case", "{{ 'hello wORLD-foo (bar) [baz] <q>' | title }} {{ 'ÉCOLE straße' | lower }} {{ 'àbç' | upper }} {{ 'hELLO' | capitalize }}", None, None),
    ("f-length", "{{ 'héllo😀' | length }} {{ [1,2] | length }} {{ {'a':1} | length }} {{ 'ab' | count }}", None, None),
    ("f-join", "{{ [1, 'a', none, true] | join(', ') }} {{ 'abc' | join('-') }} {{ ms | join('|', attribute='role') }} {{ ['x','y'] | join }}", {"ms": MSGS}, None),
    ("f-replace", "{{ 'aaa' | replace('a', 'b') }} {{ 'aaa' | replace('a', 'b', 2) }} {{ 'ab' | replace('', '-') }} {{ 'x.y.z' | replace('.', '') }}", None, None),
    ("f-first-last", "{{ [3, 4] | first }} {{ [3, 4] | last }} {{ 'xyz' | first }} [{{ [] | first }}]", None, None),
    ("f-list-reverse", "{{ 'abc' | list }} {{ [1,2,3] | reverse | list }} {{ 'abc' | reverse }} {{ {'a': 1, 'b': 2} | list }}", None, None),
    ("f-sort", "{{ [3, 1, 2] | sort }} {{ ['b', 'A', 'c'] | sort }} {{ ['b', 'A', 'c'] | sort(case_sensitive=true) }} {{ [3,1,2] | sort(reverse=true) }} {{ ms | sort(attribute='role') | map(attribute='role') | list }}", {"ms": MSGS}, None),
    ("f-sort-stable", "{{ ps | sort(attribute='k') | map(attribute='v') | join }}", {"ps": [{"k": 2, "v": "a"}, {"k": 1, "v": "b"}, {"k": 2, "v": "c"}, {"k": 1, "v": "d"}]}, None),
    ("f-unique", "{{ ['a', 'A', 'b', 'a'] | unique | list }} {{ [1, 2, 1, 3] | unique | list }}", None, None),
    ("f-map-select", "{{ ms | map(attribute='role') | list }} {{ ['a','b'] | map('upper') | list }} {{ [0,1,2,3] | select('odd') | list }} {{ [0,1,2] | reject | list }} {{ [1, none, 2] | select | list }}", {"ms": MSGS}, None),
    ("f-selectattr", "{{ ms | selectattr('role', 'equalto', 'user') | map(attribute='content') | list }} {{ ms | rejectattr('role', 'eq', 'user') | map(attribute='role') | list }} {{ ms | selectattr('tool_calls') | list | length }} {{ ms | selectattr('tool_calls', 'defined') | list | length }}", {"ms": MSGS}, None),
    ("f-map-default", "{{ ms | map(attribute='name', default='anon') | list }}", {"ms": MSGS}, None),
    ("f-items-dictsort", "{{ d | items | list }} {{ d | dictsort }} {{ d | dictsort(by='value', reverse=true) }}", {"d": {"b": 1, "a": 3, "C": 2}}, None),
    ("f-int-float", "{{ '42' | int }} {{ ' -7 ' | int }} {{ '3.9' | int }} {{ -3.9 | int }} {{ 'x' | int(5) }} {{ '0x1f' | int(0, 16) }} {{ '2.5' | float }} {{ 'bad' | float }} {{ 3 | float }} {{ true | int }}", None, None),
    ("f-abs-round", "{{ -5 | abs }} {{ -2.5 | abs }} {{ 2.5 | round }} {{ 3.5 | round }} {{ 2.675 | round(2) }} {{ 2.1 | round(0, 'ceil') }} {{ 2.9 | round(method='floor') }} {{ 7 | round }}", None, None),
    ("f-sum-min-max", "{{ [1, 2, 3] | sum }} {{ [1.5, 2] | sum }} {{ ps | sum(attribute='k') }} {{ [3, 1, 2] | max }} {{ ['b', 'A', 'c'] | min }} {{ [1, 2] | sum(start=10) }}", {"ps": [{"k": 2}, {"k": 5}]}, None),
    ("f-string", "{{ 1 | string }} {{ none | string }} {{ [1, 'a'] | string }} {{ 1.0 | string }}", None, None),
    ("f-indent", "{{ 'a\\nb\\n\\nc' | indent }}|{{ 'a\\nb' | indent(2, true) }}|{{ 'a\\n\\nb\\n' | indent(width='> ', blank=true) }}|{{ '' | indent(first=true) }}", None, None),
    ("f-escape-safe", "{{ '<a href=\"x\">&\\'</a>' | e }} {{ '<b>' | safe }} {{ '<i>' | escape }}", None, None),
    ("f-wordcount", "{{ 'hello big_world, 42 times!' | wordcount }}", None, None),
    ("f-batch", "{{ [1,2,3,4,5] | batch(2) | list }} {{ [1,2,3] | batch(2, 'x') | list }}", None, None),
    ("f-format", "{{ '%s and %s' | format('a', 'b') }} {{ '%(x)s!' | format(x=1) }}", None, None),
    ("f-attr", "{% set ns = namespace(a=5) %}{{ ns | attr('a') }} [{{ d | attr('b') }}]", {"d": {"b": 1}}, None),
    ("f-tojson", "{{ d | tojson }}\n{{ d | tojson(indent=2) }}\n{{ [] | tojson(indent=2) }} {{ {} | tojson }}\n{{ d | tojson(sort_keys=true) }}\n{{ 'é\"\\n<>&\\'' | tojson }} {{ 'é😀' | tojson(ensure_ascii=true) }}\n{{ [1, 2.5, none, true, 'x'] | tojson(separators=(',', ':')) }}\n{{ d | tojson(indent='\\t') }}\n{{ [1, [2]] | tojson(indent=0) }}", {"d": {"z": [1, {"y": None}], "a": "ä", "f": 1.5, "t": True}}, None),
    ("f-tojson-float-int", "{{ [1.0, 2.5, 1e20, -0.0, 100] | tojson }}", None, None),
    ("f-tojson-ctrl", "{{ '\\x00\\x1f\\x7f\\u2028' | tojson }} {{ '\\x7f' | tojson(ensure_ascii=true) }}", None, None),
    ("f-chain-block", "{% filter upper %}hello {{ 'world' }}{% endfilter %} {% filter replace('a', 'o') | upper %}banana{% endfilter %}", None, None),
    # ---- tests
    ("tests-types", "{{ 'a' is string }} {{ 1 is number }} {{ true is number }} {{ 1.5 is float }} {{ 1 is integer }} {{ true is integer }} {{ true is boolean }} {{ none is none }} {{ {} is mapping }} {{ [] is iterable }} {{ {} is iterable }} {{ 'x' is iterable }} {{ 1 is iterable }} {{ 'x' is sequence }} {{ {} is sequence }} {{ 1 is sequence }}", None, None),
    ("tests-values", "{{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }} {{ 9 is divisibleby(4) }} {{ 'abc' is lower }} {{ 'ABC' is upper }} {{ '1' is lower }} {{ true is true }} {{ 1 is true }} {{ false is false }} {{ 0 is false }}", None, None),
    ("tests-compare", "{{ 1 is eq 1 }} {{ 1 is ne 2 }} {{ 2 is gt 1 }} {{ 2 is ge 2 }} {{ 1 is lt 2 }} {{ 1 is le 0 }} {{ 'a' is in 'abc' }} {{ 2 is in [1, 2] }} {{ 1 is equalto 1 }} {{ 3 is greaterthan 2 }} {{ 2 is lessthan 1 }}", None, None),
    ("tests-misc", "{{ range is callable }} {{ 'x' is callable }} {{ none is sameas none }} {{ 'upper' is filter }} {{ 'odd' is test }} {{ 'nope' is filter }} {{ x is not defined }} {{ 'a' is not string }}", None, None),
    # ---- str / dict / list methods
    ("m-strip", "[{{ '  a  '.strip() }}] [{{ 'xxaxx'.strip('x') }}] [{{ '\\n\\na b\\n'.lstrip('\\n') }}] [{{ '  a  '.rstrip() }}] [{{ 'ab\\n\\n'.rstrip('\\n') }}] [{{ ' \\n x '.strip('\\n') }}]", None, None),
    ("m-split", "{{ 'a,b,,c'.split(',') }} {{ '  a  b c '.split() }} {{ 'a b c'.split(' ', 1) }} {{ 'a,b,c'.rsplit(',', 1) }} {{ ' a b  c '.rsplit(None, 1) }} {{ ''.split() }} {{ ''.split(',') }} {{ 'a\\nb\\r\\nc'.splitlines() }}", None, None),
    ("m-startswith", "{{ 'hello'.startswith('he') }} {{ 'hello'.endswith('lo') }} {{ 'hello'.startswith(('x', 'h')) }} {{ 'hello'.endswith(('x',)) }}", None, None),
    ("m-find-count", "{{ 'banana'.find('an') }} {{ 'banana'.rfind('an') }} {{ 'banana'.find('x') }} {{ 'banana'.count('a') }} {{ 'ñañaña'.find('a') }} {{ 'banana'.index('n') }}", None, None),
    ("m-case", "{{ 'hello world'.title() }} {{ \"they're bill's\".title() }} {{ 'ABC'.lower() }} {{ 'abc'.upper() }} {{ 'hELLO'.capitalize() }} {{ 'AbC'.swapcase() }}", None, None),
    ("m-replace-join", "{{ 'a-b-c'.replace('-', '+') }} {{ 'a-b-c'.replace('-', '', 1) }} {{ ', '.join(['x', 'y']) }} {{ ''.join('abc') }}", None, None),
    ("m-is", "{{ '123'.isdigit() }} {{ 'abc'.isalpha() }} {{ 'a1'.isalnum() }} {{ ' \\t'.isspace() }} {{ ''.isdigit() }} {{ 'abc'.islower() }} {{ 'AB1'.isupper() }}", None, None),
    ("m-misc", "{{ 'abc'.removeprefix('a') }} {{ 'abc'.removesuffix('c') }} {{ 'a=b=c'.partition('=') }} {{ 'a=b=c'.rpartition('=') }} {{ '7'.zfill(3) }} [{{ 'ab'.center(6, '*') }}] [{{ 'ab'.ljust(4) }}] [{{ 'ab'.rjust(4, '.') }}] {{ '{} and {}'.format(1, 'b') }} {{ '{0}{name}'.format('x', name='y') }}", None, None),
    ("m-dict", "{{ d.get('a') }} {{ d.get('zz') }} {{ d.get('zz', 5) }} {{ d.keys() | list }} {{ d.values() | list }} {% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", {"d": {"a": 1, "b": [2]}}, None),
    ("m-list", "{{ [1, 2, 1].count(1) }} {{ [1, 2, 3].index(2) }}", None, None),
    # ---- loops
    ("loop-attrs", "{% for x in 'abc' %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}|{% endfor %}", None, None),
    ("loop-prev-next", "{% for x in [1, 2, 3] %}[{{ loop.previtem }}<{{ x }}>{{ loop.nextitem }}]{% endfor %}", None, None),
    ("loop-cycle-depth", "{% for x in range(4) %}{{ loop.cycle('a', 'b', 'c') }}{% for y in [1] %}{{ loop.depth }}{% endfor %}{{ loop.depth0 }}{% endfor %}", None, None),
    ("loop-nested-loop", "{% for a in [1, 2] %}{% for b in [3, 4] %}{{ loop.index }}{% endfor %}-{{ loop.index }};{% endfor %}", None, None),
    ("loop-dict-str", "{% for k in {'x': 1, 'y': 2} %}{{ k }}{% endfor %} {% for c in 'héy' %}{{ c }}.{% endfor %}", None, None),
    ("loop-unpack", "{% for a, b in [[1, 2], (3, 4)] %}{{ a }}{{ b }};{% endfor %} {% for k, v in {'p': 1}.items() %}{{ k }}{{ v }}{% endfor %}", None, None),
    ("loop-filter", "{% for x in range(10) if x is odd %}{{ x }}{{ '/' if not loop.last }}{% endfor %} {% for m in ms if m.role == 'user' %}{{ loop.index }}:{{ m.content }};{% endfor %}", {"ms": MSGS}, None),
    ("loop-else", "{% for x in [] %}x{% else %}none{% endfor %} {% for x in [1] if false %}x{% else %}filtered{% endfor %}", None, None),
    ("loop-break-continue", "{% for x in range(10) %}{% if x is even %}{% continue %}{% endif %}{% if x > 6 %}{% break %}{% endif %}{{ x }}{% endfor %}", None, None),
    ("loop-scope", "{% set y = 5 %}{% for x in [1, 2] %}[{{ y }}]{% set y = x %}[{{ y }}]{% endfor %}[{{ y }}]", None, None),
    ("loop-namespace", "{% set ns = namespace(total=0, names=[]) %}{% for m in ms %}{% set ns.total = ns.total + 1 %}{% set ns.names = ns.names + [m.role] %}{% endfor %}{{ ns.total }} {{ ns.names }}", {"ms": MSGS}, None),
    ("loop-reverse-messages", "{% for m in ms[::-1] %}{{ m.role[0] }}{% endfor %} {% for m in ms | reverse %}{{ loop.index0 }}{% endfor %}", {"ms": MSGS}, None),
    ("loop-range", "{{ range(5) | list }} {{ range(2, 5) | list }} {{ range(10, 0, -3) | list }} {{ range(0) | list }}", None, None),
    ("if-elif", "{% for x in [1, 2, 3, 4] %}{% if x == 1 %}one{% elif x == 2 %}two{% elif x == 3 %}three{% else %}many{% endif %} {% endfor %}", None, None),
    ("if-scope", "{% if true %}{% set z = 3 %}{% endif %}{{ z }}", None, None),
    # ---- set, with, macros, call
    ("set-tuple", "{% set a, b = 1, 2 %}{{ a }}{{ b }} {% set c, d = [3, 4] %}{{ c }}{{ d }} {% set t = 1, 'x' %}{{ t }}", None, None),
    ("set-block", "{% set x %}hello {{ 'there' }}\n{% endset %}[{{ x }}] {% set y | upper %}abc{% endset %}{{ y }}", None, None),
    ("with-block", "{% with a = 1, b = 2 %}{{ a + b }}{% endwith %}[{{ a }}]", None, None),
    ("namespace-init", "{% set ns = namespace({'a': 1}, b=2) %}{{ ns.a }}{{ ns.b }} {{ ns }} {% set n2 = namespace() %}{{ n2.x is defined }}", None, None),
    ("macro-basic", "{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}!{% endmacro %}{{ greet('Ann') }} {{ greet('Bo', greeting='Hi') }} {{ greet(greeting='Yo', name='Cy') }}", None, None),
    ("macro-varargs-kwargs", "{% macro m(a) %}{{ a }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, 3, k='v') }}", None, None),
    ("macro-recursive", "{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * fact(n - 1) | int }}{% endif %}{% endmacro %}{{ fact(5) }}", None, None),
    ("macro-render-json", "{% macro render(v) %}{% if v is mapping %}{ {% for k, x in v.items() %}{{ k }}: {{ render(x) }}{{ ', ' if not loop.last }}{% endfor %} }{% elif v is string %}'{{ v }}'{% else %}{{ v }}{% endif %}{% endmacro %}{{ render(d) }}", {"d": {"a": {"b": "c", "n": 1}, "l": [1]}}, None),
    ("macro-globals", "{% set g = 'G' %}{% macro m() %}{{ g }}{{ bos_token }}{% endmacro %}{{ m() }}", {"bos_token": "<s>"}, None),
    ("macro-default-uses-param", "{% macro m(a, b=a * 2) %}{{ a }}-{{ b }}{% endmacro %}{{ m(3) }}", None, None),
    ("call-block", "{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}{% call wrap('b') %}bold {{ 1 + 1 }}{% endcall %}", None, None),
    ("call-block-args", "{% macro each(items) %}{% for i in items %}{{ caller(i) }}{% endfor %}{% endmacro %}{% call(x) each([1, 2]) %}[{{ x }}]{% endcall %}", None, None),
    ("dict-literal-order", "{{ {'b': 1, 'a': 2, '1': 3} }} {{ {'b': 1, 'a': 2, '1': 3} | tojson }}", None, None),
    ("dict-global", "{{ dict(a=1, b=[2]) }} {{ dict({'x': 1}, y=2) }}", None, None),
    ("messages-chatml", "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}", {"messages": MSGS, "add_generation_prompt": True}, None),
    ("tool-args-tojson", "{% for m in messages %}{% for tc in m.tool_calls or [] %}{{ tc.function.name }}({{ tc.function.arguments | tojson }}){% endfor %}{% endfor %}", {"messages": MSGS}, None),
    ("messages-items-key", "{{ messages[2].tool_calls[0].function.arguments.items() | list }}", {"messages": MSGS}, None),
    ("raise-exception-guarded", "{% if messages | length > 10 %}{{ raise_exception('too long') }}{% endif %}ok", {"messages": MSGS}, None),
    ("unicode-content", "{{ s | length }} {{ s[0] }} {{ s | upper }} {{ s[::-1] }}", {"s": "ß😀é"}, None),
    ("python-whitespace-trim", "[{{ s | trim }}] [{{ s.strip() }}] {{ s.split() | length }}", {"s": "\x1c\x85a\u2028b\ufeff"}, None),
    # ---- inputs and coercions where JavaScript and Python differ
    ("concat-containers", "{{ 'x' ~ [1, 'a'] }} {{ 'y' ~ {'k': 1} }}", None, None),
    ("compare-coercion", "{{ 1 == '1' }} {{ 0 == '' }} {{ none == 0 }} {{ [] == [] }} {{ 'a' in ['a'] }} {{ 1 in ['1'] }}", None, None),
    ("json-int-keys-order", "{{ d | tojson }} {% for k, v in d.items() %}{{ k }}{% endfor %}", {"d": {"b": 1, "2": 2, "1": 3}}, None),
    ("json-float-input", "{{ x }} {{ x | tojson }} {{ [x, 1.5] | tojson }}", {"x": 2.0}, None),
    ("json-big-int", "{{ x }} {{ x + 1 }} {{ x | tojson }}", {"x": 9007199254740993}, None),
    ("astral-index", "{{ s[1] }} {{ s | length }} {{ s[:1] }}", {"s": "😀x"}, None),
    # ---- errors (jinja2 raises: the C renderer must fail too)
    ("err-concat-int", "{{ 'a' + 1 }}", None, None),
    ("err-concat-list", "{{ 'a' + [1] }}", None, None),
    ("err-undefined-attr", "{{ nope.attr }}", None, None),
    ("err-undefined-missing-chain", "{{ m.missing.deeper }}", {"m": {"a": 1}}, None),
    ("err-index-empty", "{{ messages[0].role }}", {"messages": []}, None),
    ("err-raise", "{{ raise_exception('custom failure') }}", None, None),
    ("err-div-zero", "{{ 1 / 0 }}", None, None),
    ("err-compare", "{{ 1 < 'a' }}", None, None),
    ("err-not-callable", "{{ 'x'() }}", None, None),
    ("err-unknown-function", "{{ nofunc(1) }}", None, None),
    ("err-list-append", "{% set l = [1] %}{{ l.append(2) }}", None, None),
    ("err-dict-update", "{% set d = {} %}{{ d.update({'a': 1}) }}", None, None),
    ("err-ns-assign", "{% set x = 1 %}{% set x.a = 2 %}", None, None),
    ("err-unpack", "{% set a, b = [1, 2, 3] %}", None, None),
    ("err-range-big", "{{ range(1000000) | length }}", None, None),
    ("err-none-iter", "{% for x in none %}{% endfor %}", None, None),
    ("err-macro-args", "{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}", None, None),
    ("err-tojson-undefined", "{{ nope | tojson }}", None, None),
    ("err-sort-mixed", "{{ [1, 'a'] | sort }}", None, None),
    ("err-none-add", "{{ none + 1 }}", None, None),
    ("err-split-empty-sep", "{{ 'a'.split('') }}", None, None),
    # ---- strict: jinja2 prints a Python repr into the prompt; the C renderer raises a clear error instead
    ("strict-trim-list", "{{ messages[0].content | trim }}", {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}, "strict"),
    ("strict-trim-none", "{{ none | trim }}", None, "strict"),
    ("strict-upper-int", "{{ 42 | upper }}", None, "strict"),
    ("strict-replace-list", "{{ [1] | replace('1', '2') }}", None, "strict"),
]


def main():
    env = make_env()
    out_cases, templates = [], {}
    for name, src, extra, flag in CASES:
        ctx = {"messages": [], "tools": None, "documents": None, "add_generation_prompt": False, "bos_token": "", "eos_token": ""}
        ctx.update(extra or {})
        expected, error = None, None
        try:
            expected = env.from_string(src).render(**ctx)
        except Exception as e:  # noqa: BLE001 -- any jinja2 failure is an expected error
            error = f"{type(e).__name__}: {e}"
        case = {
            "template": name,
            "name": name,
            "messages": ctx.pop("messages"),
            "add_generation_prompt": ctx.pop("add_generation_prompt"),
        }
        tools = ctx.pop("tools")
        if tools is not None:
            case["tools"] = tools
        bos, eos = ctx.pop("bos_token"), ctx.pop("eos_token")
        ctx.pop("documents")
        if ctx:
            case["extra"] = ctx
        if flag == "strict":
            case["jinja2_output"] = expected
            expected, error = None, error or "strict: the C renderer raises a clear error here"
        case["expected"] = expected
        case["error"] = error
        templates[name] = {"source": src, "bos": bos, "eos": eos}
        out_cases.append(case)
    doc = {"generator": "scripts/chat_jinja2_fixtures.py", "jinja2_version": jinja2.__version__,
           "templates": templates, "cases": out_cases}
    os.makedirs("tests/fixtures/chat", exist_ok=True)
    with open("tests/fixtures/chat/jinja2_cases.json", "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    n_err = sum(1 for c in out_cases if c["expected"] is None)
    print(f"wrote tests/fixtures/chat/jinja2_cases.json: {len(out_cases)} cases ({n_err} expected errors)")


if __name__ == "__main__":
    sys.exit(main())
