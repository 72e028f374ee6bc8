"""`math` (the model's `wolfram_alpha`): an expression evaluated locally by SymPy.

SymPy's own parser (`sympify`, `parse_expr`) runs `eval` on its input, so a model-written query
never reaches it: the query is parsed as a Python expression and only numbers, symbols,
arithmetic and a fixed list of SymPy functions are turned into a SymPy expression. Exponents
are bounded, since `9**9**9` alone would hold a core for hours.
"""

from __future__ import annotations

import ast
import operator
from typing import Any, Callable

MAX_EXPONENT = 10_000
MAX_QUERY_CHARS = 2_000


class MathError(ValueError):
    pass


def _functions() -> dict[str, Callable[..., Any]]:
    import sympy

    names = (
        "sqrt exp log ln sin cos tan asin acos atan sinh cosh tanh factorial binomial gcd lcm "
        "floor ceiling Abs simplify expand factor diff integrate limit solve Rational N isprime primefactors"
    ).split()
    table = {name: getattr(sympy, name) for name in names if hasattr(sympy, name)}
    table["ln"] = sympy.log
    table["abs"] = sympy.Abs
    return table


BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
    ast.FloorDiv: operator.floordiv,
}


def evaluate(query: str) -> str:
    """The value of `query` (e.g. `2**10`, `integrate(x**2, x)`, `solve(x**2 - 4, x)`) as text."""
    import sympy

    query = query.strip().replace("^", "**")
    if not query:
        raise MathError("the query is empty")
    if len(query) > MAX_QUERY_CHARS:
        raise MathError(f"the query is longer than {MAX_QUERY_CHARS} characters")
    if "=" in query and "==" not in query:  # `x**2 = 4` means an equation to solve
        left, right = query.split("=", 1)
        query = f"solve(({left}) - ({right}))"
    try:
        tree = ast.parse(query, mode="eval")
    except SyntaxError as exc:
        raise MathError(f"not an expression: {exc.msg}") from None
    functions = _functions()
    constants = {"pi": sympy.pi, "E": sympy.E, "e": sympy.E, "I": sympy.I, "oo": sympy.oo}

    def build(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return build(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return sympy.Integer(node.value) if isinstance(node.value, int) else sympy.Float(node.value)
        if isinstance(node, ast.Name):
            if node.id in constants:
                return constants[node.id]
            if len(node.id) > 32:
                raise MathError(f"symbol name too long: {node.id[:32]}...")
            return sympy.Symbol(node.id)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = build(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            base, exponent = build(node.left), build(node.right)
            if exponent.is_number and abs(exponent) > MAX_EXPONENT:
                raise MathError(f"exponents above {MAX_EXPONENT} are not evaluated")
            return base**exponent
        if isinstance(node, ast.BinOp) and type(node.op) in BINARY:
            return BINARY[type(node.op)](build(node.left), build(node.right))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
            if node.func.id not in functions:
                raise MathError(f"unknown function {node.func.id!r}; known: {', '.join(sorted(functions))}")
            args = [build(arg) for arg in node.args]
            if node.func.id in ("factorial", "binomial", "primefactors", "isprime") and any(
                a.is_number and abs(a) > MAX_EXPONENT for a in args
            ):
                raise MathError(f"{node.func.id} of numbers above {MAX_EXPONENT} is not evaluated")
            return functions[node.func.id](*args)
        if isinstance(node, (ast.Tuple, ast.List)):
            return sympy.Tuple(*(build(e) for e in node.elts))
        raise MathError(f"unsupported syntax: {ast.dump(node)[:80]}")

    try:
        value = build(tree)
        if getattr(value, "is_number", False) and not (value.is_Integer or value.is_Float):
            return f"{value} ≈ {sympy.N(value, 15)}"
        return str(value)
    except MathError:
        raise
    except (TypeError, ValueError, ZeroDivisionError, NotImplementedError, AttributeError) as exc:
        raise MathError(f"{type(exc).__name__}: {exc}") from None
