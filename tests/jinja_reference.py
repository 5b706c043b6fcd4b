"""Reference renderer for the Jinja differential tests: Python's jinja2 set up the way transformers renders chat
templates (sandboxed, trim_blocks and lstrip_blocks, loop controls, json.dumps-based tojson, raise_exception,
strftime_now, {% generation %} as a plain block).

Usage: python3 tests/jinja_reference.py CASES.json
  CASES.json: [{"template": "...", "context": {...}}, ...]
Prints a JSON array with {"output": "..."} or {"error": "..."} per case.
"""
import json
import sys
from datetime import datetime

import jinja2
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment


class Generation(Extension):
    tags = {"generation"}

    def parse(self, parser):
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(fmt):
    return datetime.now().strftime(fmt)


env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                    extensions=[Generation, jinja2.ext.loopcontrols])
env.filters["tojson"] = tojson
env.globals["raise_exception"] = raise_exception
env.globals["strftime_now"] = strftime_now

results = []
with open(sys.argv[1], encoding="utf-8") as f:
    cases = json.load(f)
for case in cases:
    try:
        results.append({"output": env.from_string(case["template"]).render(**case["context"])})
    except Exception as e:  # the reference reports every failure as data
        results.append({"error": str(e)})
sys.stdout.write(json.dumps(results, ensure_ascii=False))
