//! Parsing of `#[persistent(...)]`, `#[merge(...)]` and the few `#[serde(...)]`
//! attributes the derive must know about. Emits no code.

use crate::ctxt::Ctxt;
use proc_macro2::Span;
use syn::meta::ParseNestedMeta;
use syn::{Attribute, Expr, ExprLit, ExprUnary, Lit, LitStr, Path, UnOp};

/// Container attributes.
#[derive(Default)]
pub struct Container {
    /// `#[persistent(class = "...")]`.
    pub class: Option<LitStr>,
    /// `#[persistent(aliases = ["...", ...])]`: older class names still read.
    pub aliases: Vec<LitStr>,
}

/// A literal bound of a bounded sum, as written (`0`, `-5`, `1.5`).
pub struct Bound {
    /// The expression emitted in the generated code.
    pub expr: Expr,
    /// Its value, to check `min <= max` while expanding.
    pub value: f64,
}

/// A field's merge rule.
pub enum Rule {
    Sum {
        min: Option<Box<Bound>>,
        max: Option<Box<Bound>>,
    },
    Union,
    Ours,
    Theirs,
    Max,
    Min,
    Same,
    Nested,
    With(Path),
    /// `per_key(rule)`: a map whose key changed on both sides merges by `rule`.
    PerKey(KeyRule),
}

/// The rule inside `per_key(...)`.
pub enum KeyRule {
    Same,
    Sum {
        min: Option<Box<Bound>>,
        max: Option<Box<Bound>>,
    },
    Nested,
}

/// A field's rule, with the span of the rule's name for errors.
pub struct FieldRule {
    pub rule: Rule,
    pub span: Span,
}

/// What a field's `#[serde(...)]` attributes say that matters to merging.
#[derive(Default)]
pub struct SerdeField {
    /// `skip`, `skip_serializing` or `skip_deserializing`: the field is not
    /// stored, or not loaded, so the stored side holds no value of it.
    pub skipped: Option<Span>,
}

pub const RULES: &str = "sum, sum(min = A, max = B), union, ours, theirs, max, min, same, nested, \
     with = path::to::fn, per_key(same | sum | sum(min = A, max = B) | nested)";

const KEY_RULES: &str = "same, sum, sum(min = A, max = B), nested";

fn string_list(meta: &ParseNestedMeta<'_>) -> syn::Result<Vec<LitStr>> {
    let value = meta.value()?;
    let content;
    syn::bracketed!(content in value);
    let list = content.parse_terminated(|p| p.parse::<LitStr>(), syn::Token![,])?;
    Ok(list.into_iter().collect())
}

pub fn container(cx: &mut Ctxt, attrs: &[Attribute]) -> Container {
    let mut out = Container::default();
    for attr in attrs {
        if attr.path().is_ident("merge") {
            cx.error_spanned_by(
                attr,
                "#[merge(...)] goes on a field; put it on the fields to merge",
            );
            continue;
        }
        if !attr.path().is_ident("persistent") {
            continue;
        }
        let parsed = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("class") {
                let lit: LitStr = meta.value()?.parse().map_err(|e| {
                    syn::Error::new(e.span(), "expected #[persistent(class = \"name\")]")
                })?;
                if lit.value().is_empty() {
                    return Err(syn::Error::new(
                        lit.span(),
                        "the class name cannot be empty",
                    ));
                }
                if out.class.is_some() {
                    return Err(meta.error("duplicate class attribute"));
                }
                out.class = Some(lit);
                Ok(())
            } else if meta.path.is_ident("aliases") {
                let list = string_list(&meta).map_err(|e| {
                    syn::Error::new(
                        e.span(),
                        "expected #[persistent(aliases = [\"old.Name\", ...])]",
                    )
                })?;
                out.aliases.extend(list);
                Ok(())
            } else {
                Err(meta.error(
                    "unknown persistent attribute; expected `class = \"name\"` or `aliases = [\"old.Name\"]`",
                ))
            }
        });
        if let Err(e) = parsed {
            cx.syn_error(e);
        }
    }
    out
}

/// A bound: an integer or float literal, possibly negated.
fn bound(expr: Expr) -> syn::Result<Bound> {
    let not_literal = |e: &Expr| {
        syn::Error::new_spanned(
            e,
            "a bound of `sum` is a number literal, such as `min = 0` or `max = 100`",
        )
    };
    let (lit, negative) = match &expr {
        Expr::Lit(ExprLit { lit, .. }) => (lit.clone(), false),
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_),
            expr: inner,
            ..
        }) => match inner.as_ref() {
            Expr::Lit(ExprLit { lit, .. }) => (lit.clone(), true),
            other => return Err(not_literal(other)),
        },
        other => return Err(not_literal(other)),
    };
    let value = match &lit {
        Lit::Int(i) => i.base10_parse::<f64>()?,
        Lit::Float(f) => f.base10_parse::<f64>()?,
        other => {
            return Err(not_literal(&Expr::Lit(ExprLit {
                attrs: Vec::new(),
                lit: other.clone(),
            })))
        }
    };
    Ok(Bound {
        value: if negative { -value } else { value },
        expr,
    })
}

type Bounds = (Option<Box<Bound>>, Option<Box<Bound>>);

/// `sum(min = A, max = B)`, either bound optional.
fn sum_bounds(meta: &ParseNestedMeta<'_>) -> syn::Result<Bounds> {
    let mut min = None;
    let mut max = None;
    meta.parse_nested_meta(|inner| {
        let slot = if inner.path.is_ident("min") {
            &mut min
        } else if inner.path.is_ident("max") {
            &mut max
        } else {
            return Err(inner.error("a bounded sum takes `min = ...` and `max = ...`"));
        };
        if slot.is_some() {
            return Err(inner.error("this bound is given twice"));
        }
        let expr: Expr = inner.value()?.parse()?;
        *slot = Some(Box::new(bound(expr)?));
        Ok(())
    })?;
    if let (Some(lo), Some(hi)) = (&min, &max) {
        if lo.value > hi.value {
            return Err(syn::Error::new_spanned(
                &lo.expr,
                "the minimum of this sum is above its maximum",
            ));
        }
    }
    Ok((min, max))
}

/// The rule of `per_key(rule)`: exactly one of [`KEY_RULES`].
fn key_rule(meta: &ParseNestedMeta<'_>) -> syn::Result<KeyRule> {
    if !meta.input.peek(syn::token::Paren) {
        return Err(meta.error(format!(
            "`per_key` takes the rule for a key both sides changed: per_key(rule), one of: {KEY_RULES}"
        )));
    }
    let mut out = None;
    meta.parse_nested_meta(|inner| {
        let has_args = inner.input.peek(syn::token::Paren);
        let rule = if inner.path.is_ident("sum") {
            let (min, max) = if has_args {
                sum_bounds(&inner)?
            } else {
                (None, None)
            };
            KeyRule::Sum { min, max }
        } else if inner.path.is_ident("same") || inner.path.is_ident("nested") {
            if has_args {
                return Err(inner.error("this per-key rule takes no arguments"));
            }
            if inner.path.is_ident("same") {
                KeyRule::Same
            } else {
                KeyRule::Nested
            }
        } else {
            return Err(inner.error(format!(
                "unknown per-key rule; expected one of: {KEY_RULES}"
            )));
        };
        if out.is_some() {
            return Err(inner.error("`per_key` takes one rule; remove the duplicate"));
        }
        out = Some(rule);
        Ok(())
    })?;
    out.ok_or_else(|| {
        meta.error(format!(
            "`per_key` takes the rule for a key both sides changed: per_key(rule), one of: {KEY_RULES}"
        ))
    })
}

pub fn field(cx: &mut Ctxt, attrs: &[Attribute]) -> Option<FieldRule> {
    let mut out: Option<FieldRule> = None;
    for attr in attrs {
        if attr.path().is_ident("persistent") {
            cx.error_spanned_by(
                attr,
                "#[persistent(...)] goes on the struct, not on a field",
            );
            continue;
        }
        if !attr.path().is_ident("merge") {
            continue;
        }
        let parsed = attr.parse_nested_meta(|meta| {
            let span = syn::spanned::Spanned::span(&meta.path);
            let simple = [
                ("union", (|| Rule::Union) as fn() -> Rule),
                ("ours", || Rule::Ours),
                ("theirs", || Rule::Theirs),
                ("max", || Rule::Max),
                ("min", || Rule::Min),
                ("same", || Rule::Same),
                ("nested", || Rule::Nested),
            ];
            let has_args = meta.input.peek(syn::token::Paren);
            let rule = if meta.path.is_ident("with") {
                let path: Path = meta.value()?.parse().map_err(|e| {
                    syn::Error::new(e.span(), "expected #[merge(with = path::to::function)]")
                })?;
                Rule::With(path)
            } else if meta.path.is_ident("sum") {
                let (min, max) = if has_args {
                    sum_bounds(&meta)?
                } else {
                    (None, None)
                };
                Rule::Sum { min, max }
            } else if meta.path.is_ident("per_key") {
                Rule::PerKey(key_rule(&meta)?)
            } else if let Some((name, make)) = simple.iter().find(|(n, _)| meta.path.is_ident(n)) {
                if has_args {
                    return Err(meta.error(format!(
                        "`{name}` takes no arguments; bounds such as `(min = 0)` go only on `sum`"
                    )));
                }
                if meta.input.peek(syn::Token![=]) && (*name == "min" || *name == "max") {
                    return Err(meta.error(format!(
                        "`{name} = ...` is a bound of a sum: write #[merge(sum({name} = ...))]"
                    )));
                }
                make()
            } else {
                return Err(meta.error(format!("unknown merge rule; expected one of: {RULES}")));
            };
            if out.is_some() {
                return Err(syn::Error::new(
                    span,
                    "a field takes one merge rule; remove the duplicate",
                ));
            }
            out = Some(FieldRule { rule, span });
            Ok(())
        });
        if let Err(e) = parsed {
            cx.syn_error(e);
        }
        if let syn::Meta::Path(_) = attr.meta {
            cx.error_spanned_by(attr, format!("expected #[merge(rule)], one of: {RULES}"));
        }
    }
    out
}

/// Reads a field's `#[serde(...)]` attributes for `skip`,
/// `skip_serializing` and `skip_deserializing`. Everything else is serde's
/// business: it is skipped over here and never reported.
pub fn serde_field(attrs: &[Attribute]) -> SerdeField {
    let mut out = SerdeField::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        let _ = attr.parse_nested_meta(|meta| {
            let skips = ["skip", "skip_serializing", "skip_deserializing"];
            if skips.iter().any(|s| meta.path.is_ident(s)) {
                out.skipped = Some(syn::spanned::Spanned::span(&meta.path));
            }
            skip_meta_value(&meta)
        });
    }
    out
}

/// Whether a container's `#[serde(...)]` has `deny_unknown_fields`, and
/// whether some field is `#[serde(flatten)]`.
pub fn serde_has(attrs: &[Attribute], word: &str) -> bool {
    let mut found = false;
    for attr in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        let _ = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident(word) {
                found = true;
            }
            skip_meta_value(&meta)
        });
    }
    found
}

/// Consumes `= value` or `(...)` after a serde attribute's name.
fn skip_meta_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(syn::Token![=]) {
        let _: Expr = meta.value()?.parse()?;
    } else if meta.input.peek(syn::token::Paren) {
        let content;
        syn::parenthesized!(content in meta.input);
        let _: proc_macro2::TokenStream = content.parse()?;
    }
    Ok(())
}
