"""CEL policies, evaluated by ``cel-expr-python`` (the Python binding of Google's cel-cpp).

Chosen by measurement among the three CEL runtimes on PyPI (Python 3.11, Linux x86_64; the
figures come from ``python bench/expressions.py --compare-cel`` and tests/unit/policy/test_cel.py):

    runtime                          spec table  type-checked  loop budget          compile  eval
    cel-expr-python 0.1.3 (cel-cpp)  60/60       at compile    10,000 iterations    238 µs   52 µs
    common-expression-language 0.10  59/60       at evaluation none (10^6: 0.44 s)  471 µs  918 µs
    cel-python 0.5 (pure Python)     53/60       at evaluation none (10^4: 1.6 s)   2.6 ms  16.7 ms

- Spec table: 60 behaviours (macros, string functions with RE2, timestamps and durations,
  int/uint/double overflow errors, absent fields, heterogeneous equality, error absorption by
  ``&&``/``||``). common-expression-language counts ``size()`` of a string in bytes, not code
  points; cel-python has no heterogeneous equality (``dyn(1) == 1.0`` is an error), no 3-argument
  ``map`` and answers ``has(a.b.c)`` on an absent ``a.b`` with false instead of an error.
- Type-checked at compile: an undeclared variable or ``predicateType + 1`` is refused when the
  policy loads, with line and column, instead of denying every image later.
- Termination: only cel-cpp stops a runaway comprehension (10,000 iterations per evaluation, all
  loops together; its default, fixed in the binding). It also caps parser nesting at 32 levels.
  Nothing bounds memory (``l.map(x, s + s)``) or quadratic work (``l.all(x, l == l)``: 2.7 s), so
  evaluations that touch untrusted input run in a killable worker (sandbox.py) with a wall-clock
  and memory limit; the budget stops most runaways early and cheaply.
- Speed: a 7-clause policy with two comprehensions over a SLSA v1 provenance (41 dependencies),
  medians of one run. Signet's whole evaluation: 87 µs in process (input checks included),
  0.32 ms through the sandbox.
- Wheels: cel-expr-python cp311 manylinux_2_27/2_28 x86_64 (glibc ≥ 2.27; no musl wheel);
  common-expression-language manylinux2014 x86_64; cel-python is pure Python.

The environment is the CEL standard library plus the ``strings``, ``optional`` (``a.?b.orValue(x)``
for absent JSON fields), ``bindings`` (``cel.bind``) and ``encoders`` (``base64``) extensions.
JSON integers outside int64 reach CEL as doubles, as JSON numbers are.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cel_expr_python import cel  # type: ignore[import-untyped,unused-ignore]
from cel_expr_python.ext import (  # type: ignore[import-untyped,unused-ignore]
    ext_bindings,
    ext_encoders,
    ext_optional,
    ext_strings,
)

from webhook.policy.expressions import (
    ExpressionSyntaxError,
    Language,
    PolicyDeniedError,
    Scope,
    evaluation_time,
    json_safe,
    one_line,
)

__all__ = ["ITERATION_BUDGET", "VARIABLES", "CompiledExpression", "compile_expression"]

# cel-cpp's RuntimeOptions.comprehension_max_iterations default; the binding does not expose it.
ITERATION_BUDGET = 10_000

# Declared variables per scope; a name outside these is a compile error.
VARIABLES: dict[Scope, dict[str, str]] = {
    Scope.ATTESTATION: {"predicateType": "string", "predicate": "dyn", "statement": "dyn",
                        "signer": "map(string, string)", "now": "timestamp"},
    Scope.POLICY: {"authorityMatches": "dyn", "spec": "dyn", "metadata": "dyn", "typemeta": "dyn",
                   "config": "dyn", "now": "timestamp"},
}
_TYPES: dict[str, Any] = {
    "string": cel.Type.STRING, "dyn": cel.Type.DYN, "timestamp": cel.Type.TIMESTAMP,
    "map(string, string)": cel.Type.Map(cel.Type.STRING, cel.Type.STRING),
}

_lock = threading.Lock()
_environments: dict[Scope, Any] = {}


def _environment(scope: Scope) -> Any:
    with _lock:
        env = _environments.get(scope)
        if env is None:
            env = cel.NewEnv(
                variables={name: _TYPES[kind] for name, kind in VARIABLES[scope].items()},
                extensions=[ext_strings.ExtStrings(), ext_optional.ExtOptional(),
                            ext_bindings.ExtBindings(), ext_encoders.ExtEncoders()])
            _environments[scope] = env
        return env


@dataclass(frozen=True)
class CompiledExpression:
    """A CEL expression that compiled and type-checked for its scope."""

    source: str
    scope: Scope
    _program: Any = field(repr=False, compare=False)

    @property
    def language(self) -> Language:
        return Language.CEL

    def evaluate(self, document: Mapping[str, Any], *, now: datetime | None = None) -> tuple[str, ...]:
        """Evaluate in this process; no warnings on success, PolicyDeniedError otherwise."""
        variables = _variables(self.scope, document, evaluation_time(now))
        try:
            result = self._program.eval(data=variables)
        except RuntimeError as exc:
            raise PolicyDeniedError(f"CEL evaluation stopped: {_runtime_message(str(exc))}") from None
        except (TypeError, ValueError, OverflowError) as exc:
            raise PolicyDeniedError(f"CEL could not read the policy input: {exc}") from None
        kind = result.type()
        if kind == cel.Type.ERROR:
            raise PolicyDeniedError(f"CEL evaluation failed: {_runtime_message(str(result.value()))}")
        if kind != cel.Type.BOOL:
            raise PolicyDeniedError(f"CEL expression returned {kind.name().lower()} "
                                    f"{one_line(repr(result.plain_value()), 80)}, not a bool")
        if result.value() is not True:
            raise PolicyDeniedError(f"CEL expression is false: {one_line(self.source)}")
        return ()


def compile_expression(text: str, scope: Scope = Scope.ATTESTATION) -> CompiledExpression:
    """Parse and type-check ``text``; ExpressionSyntaxError (with line and column) when it cannot load."""
    environment = _environment(scope)
    try:
        with _lock:  # cel-cpp documents evaluation, not compilation, as thread-safe
            program = environment.compile(text)
    except RuntimeError as exc:
        raise ExpressionSyntaxError(f"CEL expression does not compile: {_compile_message(str(exc))}") from None
    returns = program.return_type()
    if returns not in (cel.Type.BOOL, cel.Type.DYN):
        raise ExpressionSyntaxError(f"CEL expression returns {returns.name().lower()}; it must return a bool")
    return CompiledExpression(text, scope, program)


def _variables(scope: Scope, document: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    if scope is Scope.ATTESTATION:
        statement = json_safe(document.get("statement"))
        signer = document.get("signer")
        if not isinstance(statement, dict):
            raise PolicyDeniedError("the attestation's statement is not a JSON object")
        if not isinstance(signer, Mapping) or not all(isinstance(v, str) for v in signer.values()):
            raise PolicyDeniedError("the attestation's signer is not a map of strings")
        predicate_type = statement.get("predicateType")
        return {"predicateType": predicate_type if isinstance(predicate_type, str) else "",
                "predicate": statement.get("predicate"), "statement": statement,
                "signer": dict(signer), "now": now}
    safe = json_safe(document)
    if not isinstance(safe, dict):
        raise PolicyDeniedError("the policy input is not a JSON object")
    # An absent part (not included by the policy) reads as an empty map, so has() works on it.
    variables: dict[str, Any] = {name: {} if safe.get(name) is None else safe[name]
                                 for name in VARIABLES[scope] if name != "now"}
    variables["now"] = now
    return variables


# cel-cpp reports "INVALID_ARGUMENT: ERROR: <input>:2:3: message\n | snippet\n | ..^ [INVALID_ARGUMENT]".
_STATUS = re.compile(r"^[A-Z_]+: |\s*\[[A-Z_]+\]$")
_POSITION = re.compile(r"(?:ERROR: )?<input>:(-?\d+):(-?\d+): ")


def _compile_message(raw: str) -> str:
    text = _STATUS.sub("", raw.strip()).replace(" (in container '')", "")

    def position(match: re.Match[str]) -> str:
        line, column = int(match.group(1)), int(match.group(2))
        return f"line {line}, column {column}: " if line > 0 and column > 0 else ""

    return _POSITION.sub(position, text)


def _runtime_message(raw: str) -> str:
    text = _STATUS.sub("", raw.strip())
    if "Iteration budget exceeded" in text:
        return f"more than {ITERATION_BUDGET} comprehension iterations (the evaluation budget)"
    return text
