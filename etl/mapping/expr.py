"""The safe expression language for computed fields and filters.

A hand-written tokenizer and recursive-descent parser build a tiny AST; `compile_expr` turns it
into nested closures. User text is never given to eval/exec/compile: names are only field paths
(dictionary lookups) or calls of the fixed functions in etl/mapping/functions.py, there is no
attribute access, and sizes are bounded. Parts whose operands are all literals are evaluated at
validation time, so `2 ** 99999999` or `'x' * 10**9` are refused before any data moves.

Grammar (lowest precedence first):
    expr    := 'if' expr 'then' expr 'else' expr | or
    or      := and ('or' and)*
    and     := not ('and' not)*
    not     := 'not' not | compare
    compare := sum (('=='|'!='|'<'|'<='|'>'|'>='|'in'|'not in') sum)?
    sum     := product (('+'|'-') product)*
    product := unary (('*'|'/'|'//'|'%') unary)*
    unary   := '-' unary | power
    power   := primary ('**' unary)?
    primary := number | 'text' | true | false | null | name '(' args ')' | path | '(' expr ')' | '[' items ']'
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from etl.mapping.functions import (
    FUNCTIONS,
    MAX_EXPONENT,
    MAX_TEXT,
    EvalError,
    align,
    bounded,
    number,
    power,
    repeat,
)
from etl.mapping.paths import MISSING, Path, PathSyntaxError, make_getter, parse_path
from etl.mapping.types import type_name

Evaluator = Callable[[tuple], Any]
MAX_SOURCE = 4000
"""Longest expression text accepted (characters)."""
MAX_DEPTH = 60
"""Deepest nesting accepted (keeps the parser's recursion bounded)."""

KEYWORDS = {"and", "or", "not", "in", "if", "then", "else", "true", "false", "null"}
_TOKEN = re.compile(
    r"""(?P<space>\s+)
      |(?P<number>\d+\.\d*|\.\d+|\d+)
      |(?P<text>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      |(?P<path>(?:\$[A-Za-z]+|[A-Za-z_][A-Za-z0-9_]*|`[^`]*`)(?:\.(?:[A-Za-z_][A-Za-z0-9_]*|`[^`]*`)|\[-?\d+\])*)
      |(?P<op>\*\*|//|==|!=|<=|>=|[-+*/%<>(),\[\]])
      |(?P<bad>.)""",
    re.VERBOSE,
)


class ExprError(ValueError):
    """Invalid expression text; `column` is the 1-based character position."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(message)
        self.column = column


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    column: int


def tokenize(source: str) -> list[Token]:
    if len(source) > MAX_SOURCE:
        raise ExprError(f"the expression is longer than {MAX_SOURCE} characters", 1)
    tokens = []
    for match in _TOKEN.finditer(source):
        kind, text, column = match.lastgroup or "bad", match.group(0), match.start() + 1
        if kind == "space":
            continue
        if kind == "bad":
            hint = " (attribute access is not part of the language)" if text == "." else ""
            raise ExprError(f"unexpected character `{text}`{hint}", column)
        if kind == "path" and text in KEYWORDS:
            kind = "keyword"
        tokens.append(Token(kind, text, column))
    tokens.append(Token("end", "", len(source) + 1))
    return tokens


# The AST: each node is a small frozen dataclass.
@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class FieldRef:
    path: Path


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple


@dataclass(frozen=True)
class Unary:
    op: str
    operand: Any


@dataclass(frozen=True)
class Binary:
    op: str
    left: Any
    right: Any
    column: int


@dataclass(frozen=True)
class Conditional:
    test: Any
    then: Any
    otherwise: Any


@dataclass(frozen=True)
class ListLiteral:
    items: tuple


class _Parser:
    def __init__(self, source: str) -> None:
        self.tokens = tokenize(source)
        self.index = 0
        self.depth = 0

    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def take(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def accept(self, *texts: str) -> Token | None:
        if self.token.kind in ("op", "keyword") and self.token.text in texts:
            return self.take()
        return None

    def expect(self, text: str) -> Token:
        token = self.accept(text)
        if token is None:
            raise ExprError(f"expected `{text}`, found {self.describe()}", self.token.column)
        return token

    def describe(self) -> str:
        return "the end" if self.token.kind == "end" else f"`{self.token.text}`"

    def parse(self) -> Any:
        node = self.expr()
        if self.token.kind != "end":
            hint = ""
            if self.token.kind == "op" and self.token.text in ("(", "["):
                hint = " (only the fixed functions can be called; values have no methods)"
            raise ExprError(f"unexpected {self.describe()}{hint}", self.token.column)
        return node

    def expr(self) -> Any:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExprError(f"the expression nests deeper than {MAX_DEPTH} levels", self.token.column)
        try:
            if self.accept("if"):
                test = self.expr()
                self.expect("then")
                then = self.expr()
                self.expect("else")
                return Conditional(test, then, self.expr())
            return self.disjunction()
        finally:
            self.depth -= 1

    def disjunction(self) -> Any:
        node = self.conjunction()
        while (token := self.accept("or")) is not None:
            node = Binary("or", node, self.conjunction(), token.column)
        return node

    def conjunction(self) -> Any:
        node = self.negation()
        while (token := self.accept("and")) is not None:
            node = Binary("and", node, self.negation(), token.column)
        return node

    def negation(self) -> Any:
        if self.accept("not"):
            return Unary("not", self.negation())
        return self.comparison()

    def comparison(self) -> Any:
        node = self.sum()
        token = self.accept("==", "!=", "<", "<=", ">", ">=", "in")
        if token is None and self.token.text == "not" and self.tokens[self.index + 1].text == "in":
            token = self.take()
            self.take()
            return Unary("not", Binary("in", node, self.sum(), token.column))
        if token is not None:
            return Binary(token.text, node, self.sum(), token.column)
        return node

    def sum(self) -> Any:
        node = self.product()
        while (token := self.accept("+", "-")) is not None:
            node = Binary(token.text, node, self.product(), token.column)
        return node

    def product(self) -> Any:
        node = self.unary()
        while (token := self.accept("*", "/", "//", "%")) is not None:
            node = Binary(token.text, node, self.unary(), token.column)
        return node

    def unary(self) -> Any:
        if self.accept("-"):
            return Unary("-", self.unary())
        return self.power()

    def power(self) -> Any:
        node = self.primary()
        token = self.accept("**")
        if token is not None:
            return Binary("**", node, self.unary(), token.column)
        return node

    def primary(self) -> Any:
        token = self.take()
        if token.kind == "number":
            return Literal(Decimal(token.text) if "." in token.text else int(token.text))
        if token.kind == "text":
            return Literal(_unquote(token))
        if token.kind == "keyword" and token.text in ("true", "false", "null"):
            return Literal({"true": True, "false": False, "null": None}[token.text])
        if token.kind == "op" and token.text == "(":
            node = self.expr()
            self.expect(")")
            return node
        if token.kind == "op" and token.text == "[":
            items = []
            if not self.accept("]"):
                items.append(self.expr())
                while self.accept(","):
                    items.append(self.expr())
                self.expect("]")
            return ListLiteral(tuple(items))
        if token.kind == "path":
            if self.token.kind == "op" and self.token.text == "(":
                return self.call(token)
            try:
                return FieldRef(parse_path(token.text))
            except PathSyntaxError as exc:
                raise ExprError(str(exc), token.column) from None
        raise ExprError(
            f"expected a value, found {'the end' if token.kind == 'end' else f'`{token.text}`'}", token.column
        )

    def call(self, name: Token) -> Any:
        function = FUNCTIONS.get(name.text)
        if function is None:
            from etl.located import suggest

            near = suggest(name.text, set(FUNCTIONS))
            raise ExprError(
                f"unknown function `{name.text}`"
                + (f"; {near}" if near else "")
                + f" (functions: {', '.join(sorted(FUNCTIONS))})",
                name.column,
            )
        self.expect("(")
        args = []
        if not self.accept(")"):
            args.append(self.expr())
            while self.accept(","):
                args.append(self.expr())
            self.expect(")")
        if len(args) < function.min_args or (function.max_args is not None and len(args) > function.max_args):
            wanted = (
                str(function.min_args)
                if function.min_args == function.max_args
                else f"{function.min_args} or more"
                if function.max_args is None
                else f"{function.min_args} to {function.max_args}"
            )
            raise ExprError(f"{name.text}() takes {wanted} arguments, got {len(args)}", name.column)
        return Call(name.text, tuple(args))


def _unquote(token: Token) -> str:
    body = token.text[1:-1]
    out, index = [], 0
    escapes = {"n": "\n", "t": "\t", "\\": "\\", "'": "'", '"': '"'}
    while index < len(body):
        char = body[index]
        if char == "\\":
            following = body[index + 1]
            if following not in escapes:
                raise ExprError(
                    f"unknown escape `\\{following}` (use \\n \\t \\\\ \\' \\\")", token.column + index
                )
            out.append(escapes[following])
            index += 2
        else:
            out.append(char)
            index += 1
    return "".join(out)


def parse_expr(source: str) -> Any:
    """Parse expression text into an AST; raises ExprError with the character position."""
    if not isinstance(source, str) or not source.strip():
        raise ExprError("the expression is empty", 1)
    return _Parser(source).parse()


def field_paths(node: Any) -> list[Path]:
    """Every source path an expression reads."""
    if isinstance(node, FieldRef):
        return [node.path]
    children: tuple = ()
    if isinstance(node, Call):
        children = node.args
    elif isinstance(node, ListLiteral):
        children = node.items
    elif isinstance(node, Unary):
        children = (node.operand,)
    elif isinstance(node, Binary):
        children = (node.left, node.right)
    elif isinstance(node, Conditional):
        children = (node.test, node.then, node.otherwise)
    return [path for child in children for path in field_paths(child)]


def _arith(function: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def apply(left: Any, right: Any) -> Any:
        if left is None or right is None:
            return None
        left, right = align(number(left), number(right))
        try:
            return bounded(function(left, right))
        except ZeroDivisionError:
            raise EvalError("division by zero", right) from None
        except (InvalidOperation, ArithmeticError) as exc:
            raise EvalError(f"arithmetic failed ({type(exc).__name__})", left) from None

    return apply


def _plus(left: Any, right: Any) -> Any:
    if isinstance(left, str) and isinstance(right, str):
        if len(left) + len(right) > MAX_TEXT:
            raise EvalError(f"the text would be longer than {MAX_TEXT} characters", left)
        return left + right
    if isinstance(left, str) or isinstance(right, str):
        if left is None or right is None:
            return None
        raise EvalError(
            f"cannot add a {type_name(left)} and a {type_name(right)} (use concat() or str() to join text)",
            right if isinstance(left, str) else left,
        )
    return _arith(operator.add)(left, right)


def _times(left: Any, right: Any) -> Any:
    if isinstance(left, str):
        return repeat(left, right)
    if isinstance(right, str):
        return repeat(right, left)
    return _arith(operator.mul)(left, right)


def _divide(left: Any, right: Any) -> Any:
    if left is None or right is None:
        return None
    left, right = align(number(left), number(right))
    if isinstance(left, int) and isinstance(right, int):
        left = Decimal(left)
    return _arith(operator.truediv)(left, right)


def _order(function: Callable[[Any, Any], bool]) -> Callable[[Any, Any], Any]:
    def compare(left: Any, right: Any) -> Any:
        if left is None or right is None:
            return None
        if not isinstance(left, str):
            left, right = align(_comparable(left), _comparable(right))
        try:
            return function(left, right)
        except TypeError:
            raise EvalError(f"cannot compare a {type_name(left)} with a {type_name(right)}", right) from None

    return compare


def _comparable(value: Any) -> Any:
    try:
        return number(value)
    except EvalError:
        return value


def _equal(left: Any, right: Any) -> bool:
    if isinstance(left, (int, float, Decimal)) or isinstance(right, (int, float, Decimal)):
        left, right = align(_comparable(left), _comparable(right))
    return bool(left == right)


def _contains(left: Any, right: Any) -> Any:
    if right is None:
        return None
    if isinstance(right, str):
        if not isinstance(left, str):
            raise EvalError("`in` on text needs text on the left", left)
        return left in right
    if isinstance(right, list):
        return any(_equal(left, item) for item in right)
    raise EvalError(f"`in` needs text or an array on the right, not a {type_name(right)}", right)


BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "+": _plus,
    "-": _arith(operator.sub),
    "*": _times,
    "/": _divide,
    "//": _arith(operator.floordiv),
    "%": _arith(operator.mod),
    "**": lambda left, right: None if left is None or right is None else power(left, right),
    "==": _equal,
    "!=": lambda left, right: not _equal(left, right),
    "<": _order(operator.lt),
    "<=": _order(operator.le),
    ">": _order(operator.gt),
    ">=": _order(operator.ge),
    "in": _contains,
}


def _negate(value: Any) -> Any:
    return None if value is None else bounded(-number(value))


def compile_expr(node: Any) -> Evaluator:
    """Closures for an AST. Literal-only parts are folded now; their errors raise ExprError."""
    return _compile(node)[0]


def _constant(value: Any) -> tuple[Evaluator, bool]:
    return (lambda ctx: value), True


def _fold(evaluator: Evaluator, column: int) -> tuple[Evaluator, bool]:
    try:
        value = evaluator(())
    except EvalError as exc:
        raise ExprError(f"this part can never be computed: {exc.reason}", column) from None
    return _constant(value)


def _compile(node: Any) -> tuple[Evaluator, bool]:
    """Return (evaluator, is_constant)."""
    if isinstance(node, Literal):
        return _constant(node.value)
    if isinstance(node, FieldRef):
        getter = make_getter(node.path)

        def read(ctx: tuple) -> Any:
            value = getter(ctx)
            return None if value is MISSING else value

        return read, False
    if isinstance(node, ListLiteral):
        parts = [_compile(item) for item in node.items]
        items = [part[0] for part in parts]
        evaluator = lambda ctx: [item(ctx) for item in items]  # noqa: E731
        return _fold(evaluator, 1) if all(part[1] for part in parts) else (evaluator, False)
    if isinstance(node, Unary):
        operand, constant = _compile(node.operand)
        if node.op == "not":
            evaluator = lambda ctx: not operand(ctx)  # noqa: E731
        else:
            evaluator = lambda ctx: _negate(operand(ctx))  # noqa: E731
        return _fold(evaluator, 1) if constant else (evaluator, False)
    if isinstance(node, Conditional):
        (test, c1), (then, c2), (otherwise, c3) = (
            _compile(node.test),
            _compile(node.then),
            _compile(node.otherwise),
        )
        evaluator = lambda ctx: then(ctx) if test(ctx) else otherwise(ctx)  # noqa: E731
        return _fold(evaluator, 1) if c1 and c2 and c3 else (evaluator, False)
    if isinstance(node, Call):
        function = FUNCTIONS[node.name].call
        parts = [_compile(arg) for arg in node.args]
        args = [part[0] for part in parts]
        if len(args) == 1:
            only = args[0]
            evaluator = lambda ctx: function(only(ctx))  # noqa: E731
        else:
            evaluator = lambda ctx: function(*[arg(ctx) for arg in args])  # noqa: E731
        return _fold(evaluator, 1) if all(part[1] for part in parts) else (evaluator, False)
    if isinstance(node, Binary):
        return _compile_binary(node)
    raise TypeError(f"not an expression node: {node!r}")


def _compile_binary(node: Binary) -> tuple[Evaluator, bool]:
    (left, left_constant), (right, right_constant) = _compile(node.left), _compile(node.right)
    if node.op == "and":
        evaluator = lambda ctx: left(ctx) and right(ctx)  # noqa: E731
    elif node.op == "or":
        evaluator = lambda ctx: left(ctx) or right(ctx)  # noqa: E731
    else:
        function = BINARY[node.op]
        evaluator = lambda ctx: function(left(ctx), right(ctx))  # noqa: E731
        if right_constant and not left_constant:
            _check_literal_operand(node, right(()))
    if left_constant and right_constant:
        return _fold(evaluator, node.column)
    return evaluator, False


def _check_literal_operand(node: Binary, value: Any) -> None:
    """Refuse at validation what could only blow up at run time: huge exponents and repeats."""
    if node.op == "**" and isinstance(value, (int, Decimal)) and abs(value) > MAX_EXPONENT:
        raise ExprError(f"exponents above {MAX_EXPONENT} are refused", node.column)
    if node.op == "*" and isinstance(value, int) and value > MAX_TEXT:
        raise ExprError(f"repeating text more than {MAX_TEXT} times is refused", node.column)
