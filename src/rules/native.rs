//! Native evaluation of the common subset of `when` scripts: a column compared with a
//! literal, `&&`, `||`, `!`, `in` or `!in` a literal array, `coin_flip()`, `random()`. Such a
//! script is compiled once, from the AST Rhai itself parsed and optimised, into a small
//! tree that `Evaluator::evaluate` walks instead of running the interpreter: no scope to
//! fill, no clock to read, no allocation, a few nanoseconds an evaluation.
//!
//! The native result must be the interpreter's, bit for bit, on every row. So a script is
//! compiled only where the column types (from the schema) and the literal types mean Rhai
//! could neither fail nor take a path this file does not copy: each operator is Rhai's
//! built-in one for those operand types (`rhai::func::builtin`: float comparisons are
//! relative to `f64::EPSILON`, ints are compared with floats as floats), `in` is Rhai's
//! `contains` (the array's item on the left of `==`, first match wins), `&&` and `||`
//! short-circuit, and operands are evaluated left to right so random draws come in
//! Rhai's order. Everything else (a variable that is not an input column, a function,
//! a statement, a literal of another type, a type pair Rhai has no built-in operator for)
//! is left to Rhai. A value of another type than its column's (a `()` where no value was
//! built) sends that one evaluation to Rhai too. `native/tests.rs` proves the equality on
//! generated scripts and rows.

use rhai::{AST, Dynamic, Expr, FnCallExpr, ImmutableString, Stmt, Token};

use super::random;
use crate::model::{ColumnType, Columns};

/// A rule compiled to native code.
#[derive(Debug, Clone)]
pub(super) struct Program {
    root: Node,
    /// Nodes and array items: a bound on the work of one evaluation (see `size`).
    size: usize,
}

/// The static type of a node's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Int,
    Float,
    Bool,
    Str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone)]
enum Node {
    /// An input column, of its schema type.
    Column(usize, Type),
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(ImmutableString),
    /// `coin_flip()`: a bool.
    CoinFlip,
    /// `random()`: a float in [0, 1).
    Random,
    Not(Box<Node>),
    And(Vec<Node>),
    Or(Vec<Node>),
    Compare(Op, Box<Node>, Box<Node>),
    /// `value in [items]`: the items are literals.
    In(Box<Node>, Vec<Node>),
}

impl Node {
    /// This node, its operands and its array's items, counted.
    fn size(&self) -> usize {
        1 + match self {
            Node::Not(inner) => inner.size(),
            Node::And(operands) | Node::Or(operands) => operands.iter().map(Node::size).sum(),
            Node::Compare(_, lhs, rhs) => lhs.size() + rhs.size(),
            Node::In(item, items) => item.size() + items.len(),
            _ => 0,
        }
    }

    fn kind(&self) -> Type {
        match self {
            Node::Column(_, t) => *t,
            Node::Int(_) => Type::Int,
            Node::Float(_) | Node::Random => Type::Float,
            Node::Str(_) => Type::Str,
            Node::Bool(_)
            | Node::CoinFlip
            | Node::Not(_)
            | Node::And(_)
            | Node::Or(_)
            | Node::Compare(..)
            | Node::In(..) => Type::Bool,
        }
    }
}

/// Compiles `ast` natively when the whole script is in the subset, for the input's
/// `columns`; `None` leaves it to Rhai.
pub(super) fn compile(ast: &AST, columns: &Columns) -> Option<Program> {
    // A script function could shadow `coin_flip`, `contains` or an operator's meaning.
    if ast.has_functions() {
        return None;
    }
    let [statement] = ast.statements() else {
        return None;
    };
    let root = match statement {
        Stmt::Expr(expr) => node(expr, columns)?,
        Stmt::FnCall(call, _) => call_node(call, columns)?,
        _ => return None,
    };
    if root.kind() != Type::Bool {
        return None;
    }
    let size = root.size();
    Some(Program { root, size })
}

fn node(expr: &Expr, columns: &Columns) -> Option<Node> {
    Some(match expr {
        Expr::BoolConstant(b, _) => Node::Bool(*b),
        Expr::IntegerConstant(n, _) => Node::Int(*n),
        Expr::FloatConstant(f, _) => Node::Float(**f),
        Expr::StringConstant(s, _) => Node::Str(s.clone()),
        Expr::DynamicConstant(value, _) => literal(value)?,
        Expr::Variable(var, _, _) => {
            // Only input columns: anything else (a future window value, a list) is Rhai's.
            let index = columns.index(var.1.as_str())?;
            let kind = match columns.types[index] {
                ColumnType::Int => Type::Int,
                ColumnType::Float => Type::Float,
                ColumnType::Bool => Type::Bool,
                ColumnType::String => Type::Str,
            };
            Node::Column(index, kind)
        }
        Expr::And(operands, _) | Expr::Or(operands, _) => {
            let nodes = operands
                .iter()
                .map(|e| bool_node(e, columns))
                .collect::<Option<Vec<_>>>()?;
            if matches!(expr, Expr::And(..)) {
                Node::And(nodes)
            } else {
                Node::Or(nodes)
            }
        }
        Expr::FnCall(call, _) => call_node(call, columns)?,
        _ => return None,
    })
}

fn bool_node(expr: &Expr, columns: &Columns) -> Option<Node> {
    node(expr, columns).filter(|n| n.kind() == Type::Bool)
}

/// A literal value (what the optimiser folds constants into).
fn literal(value: &Dynamic) -> Option<Node> {
    if let Ok(b) = value.as_bool() {
        Some(Node::Bool(b))
    } else if let Ok(n) = value.as_int() {
        Some(Node::Int(n))
    } else if let Ok(f) = value.as_float() {
        Some(Node::Float(f))
    } else if value.is_string() {
        value.clone().into_immutable_string().ok().map(Node::Str)
    } else {
        None
    }
}

/// The items of a literal array, as the parser or the optimiser left it.
fn literal_items(expr: &Expr, columns: &Columns) -> Option<Vec<Node>> {
    let items = match expr {
        Expr::Array(items, _) => items
            .iter()
            .map(|e| node(e, columns))
            .collect::<Option<Vec<_>>>()?,
        Expr::DynamicConstant(value, _) if value.is_array() => value
            .as_array_ref()
            .ok()?
            .iter()
            .map(literal)
            .collect::<Option<Vec<_>>>()?,
        _ => return None,
    };
    items
        .iter()
        .all(|n| {
            matches!(
                n,
                Node::Int(_) | Node::Float(_) | Node::Bool(_) | Node::Str(_)
            )
        })
        .then_some(items)
}

fn call_node(call: &FnCallExpr, columns: &Columns) -> Option<Node> {
    if call.capture_parent_scope {
        return None;
    }
    let args = &call.args;
    let name = call.name.as_str();
    if call.op_token.is_some() {
        if let ("!", [arg]) = (name, &args[..]) {
            return Some(Node::Not(Box::new(bool_node(arg, columns)?)));
        }
        // `value !in array` is `!` around `contains(array, value)`, a call that keeps its
        // operator token (`in` is a valid function name and loses it): Rhai has no
        // built-in operator for it and calls `contains`, as for `in`.
        if let (Some(Token::NotIn), "contains", [array, value]) = (&call.op_token, name, &args[..])
        {
            return contains_node(array, value, columns);
        }
        let op = match name {
            "==" => Op::Eq,
            "!=" => Op::Ne,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "<" => Op::Lt,
            "<=" => Op::Le,
            _ => return None,
        };
        let [lhs, rhs] = &args[..] else { return None };
        let (lhs, rhs) = (node(lhs, columns)?, node(rhs, columns)?);
        // Only the type pairs Rhai has a built-in operator for.
        comparable(lhs.kind(), rhs.kind()).then_some(())?;
        return Some(Node::Compare(op, Box::new(lhs), Box::new(rhs)));
    }
    match (name, &args[..]) {
        ("coin_flip", []) => Some(Node::CoinFlip),
        ("random", []) => Some(Node::Random),
        // `value in array` is parsed as `contains(array, value)`.
        ("contains", [array, value]) => contains_node(array, value, columns),
        _ => None,
    }
}

/// `contains(array, value)`, when `array` is a literal one.
fn contains_node(array: &Expr, value: &Expr, columns: &Columns) -> Option<Node> {
    let value = node(value, columns)?;
    let items = literal_items(array, columns)?;
    // Each item is compared with `==`: a pair without a built-in `==` could be an error
    // (same type) or false (another type) in Rhai; leave those to it.
    items
        .iter()
        .all(|item| comparable(item.kind(), value.kind()))
        .then_some(())?;
    Some(Node::In(Box::new(value), items))
}

/// Whether Rhai has a built-in comparison for these operand types.
fn comparable(a: Type, b: Type) -> bool {
    matches!(
        (a, b),
        (Type::Int | Type::Float, Type::Int | Type::Float)
            | (Type::Bool, Type::Bool)
            | (Type::Str, Type::Str)
    )
}

/// A value met while evaluating (strings are compared where they are read).
#[derive(Clone, Copy)]
enum Value {
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// The random stream of one evaluation: its key is computed at the first draw.
struct Draws<K> {
    key: Option<u64>,
    make_key: K,
    n: u64,
}

impl<K: FnMut() -> u64> Draws<K> {
    fn next(&mut self) -> u64 {
        let key = *self.key.get_or_insert_with(&mut self.make_key);
        let bits = random::draw(key, self.n);
        self.n += 1;
        bits
    }
}

impl Program {
    /// How many nodes an evaluation may visit at most: its cost, in steps of a few
    /// nanoseconds (a blocklist of thousands of items is thousands of steps).
    pub(super) fn size(&self) -> usize {
        self.size
    }

    /// The rule's result on a row's `values` (one per column); `key` gives the random
    /// stream's key. `None` when a value is not of its column's type: Rhai decides then.
    pub(super) fn evaluate(&self, values: &[Dynamic], key: impl FnMut() -> u64) -> Option<bool> {
        let mut draws = Draws {
            key: None,
            make_key: key,
            n: 0,
        };
        truth(&self.root, values, &mut draws)
    }
}

fn truth<K: FnMut() -> u64>(node: &Node, values: &[Dynamic], draws: &mut Draws<K>) -> Option<bool> {
    match value(node, values, draws)? {
        Value::Bool(b) => Some(b),
        // Compilation typed every bool position.
        _ => None,
    }
}

fn value<K: FnMut() -> u64>(
    node: &Node,
    values: &[Dynamic],
    draws: &mut Draws<K>,
) -> Option<Value> {
    Some(match node {
        Node::Column(c, kind) => {
            let v = &values[*c];
            match kind {
                Type::Int => Value::Int(v.as_int().ok()?),
                Type::Float => Value::Float(v.as_float().ok()?),
                Type::Bool => Value::Bool(v.as_bool().ok()?),
                // Strings are only read by `compare` and `contains`.
                Type::Str => return None,
            }
        }
        Node::Int(n) => Value::Int(*n),
        Node::Float(f) => Value::Float(*f),
        Node::Bool(b) => Value::Bool(*b),
        Node::Str(_) => return None,
        Node::CoinFlip => Value::Bool(draws.next() >> 63 == 1),
        Node::Random => Value::Float(random::unit(draws.next())),
        Node::Not(inner) => Value::Bool(!truth(inner, values, draws)?),
        Node::And(operands) => {
            for operand in operands {
                if !truth(operand, values, draws)? {
                    return Some(Value::Bool(false));
                }
            }
            Value::Bool(true)
        }
        Node::Or(operands) => {
            for operand in operands {
                if truth(operand, values, draws)? {
                    return Some(Value::Bool(true));
                }
            }
            Value::Bool(false)
        }
        Node::Compare(op, lhs, rhs) => {
            if lhs.kind() == Type::Str {
                return with_str(lhs, values, |a| {
                    with_str(rhs, values, |b| Value::Bool(op.order(a.cmp(b))))
                })?;
            }
            let a = value(lhs, values, draws)?;
            let b = value(rhs, values, draws)?;
            Value::Bool(compare(*op, a, b)?)
        }
        Node::In(item, items) => {
            if item.kind() == Type::Str {
                return with_str(item, values, |v| {
                    Value::Bool(
                        items
                            .iter()
                            .any(|i| matches!(i, Node::Str(s) if s.as_str() == v)),
                    )
                });
            }
            let v = value(item, values, draws)?;
            let mut found = false;
            for i in items {
                // Rhai calls `==(item, value)`: the item is the left operand.
                if compare(Op::Eq, value(i, values, draws)?, v)? {
                    found = true;
                    break;
                }
            }
            Value::Bool(found)
        }
    })
}

/// Calls `f` with the string a string-typed node holds.
fn with_str<R>(node: &Node, values: &[Dynamic], f: impl FnOnce(&str) -> R) -> Option<R> {
    match node {
        Node::Str(s) => Some(f(s.as_str())),
        Node::Column(c, Type::Str) => {
            let s = values[*c].as_immutable_string_ref().ok()?;
            Some(f(s.as_str()))
        }
        _ => None,
    }
}

impl Op {
    fn order(self, ordering: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            Op::Eq => ordering == Equal,
            Op::Ne => ordering != Equal,
            Op::Gt => ordering == Greater,
            Op::Ge => ordering != Less,
            Op::Lt => ordering == Less,
            Op::Le => ordering != Greater,
        }
    }
}

/// Rhai's built-in comparison of two values (`rhai::func::builtin`).
fn compare(op: Op, a: Value, b: Value) -> Option<bool> {
    Some(match (a, b) {
        (Value::Int(x), Value::Int(y)) => op.order(x.cmp(&y)),
        (Value::Bool(x), Value::Bool(y)) => op.order(x.cmp(&y)),
        (Value::Int(x), Value::Float(y)) => float_compare(op, x as f64, y),
        (Value::Float(x), Value::Int(y)) => float_compare(op, x, y as f64),
        (Value::Float(x), Value::Float(y)) => float_compare(op, x, y),
        _ => return None,
    })
}

/// Rhai's float comparisons (checked build): equal within a relative `f64::EPSILON`, and
/// ordered only beyond it. Copied operation for operation, so infinities and signed
/// zeros give what Rhai gives (`inf > 1.0` is false there: `(inf - 1) / inf` is NaN).
fn float_compare(op: Op, x: f64, y: f64) -> bool {
    let max = if x * y == 0.0 {
        1.0
    } else {
        x.abs().max(y.abs())
    };
    if max == 0.0 {
        return matches!(op, Op::Eq | Op::Ge | Op::Le);
    }
    match op {
        Op::Eq => (x - y).abs() / max <= f64::EPSILON,
        Op::Ne => (x - y).abs() / max > f64::EPSILON,
        Op::Gt => (x - y) / max > f64::EPSILON,
        Op::Ge => (x - y) / max > -f64::EPSILON,
        Op::Lt => (y - x) / max > f64::EPSILON,
        Op::Le => (y - x) / max > -f64::EPSILON,
    }
}

#[cfg(test)]
mod tests;
