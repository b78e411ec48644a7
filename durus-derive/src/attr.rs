//! Parsing of `#[persistent(...)]` and `#[merge(...)]`. Emits no code.

use crate::ctxt::Ctxt;
use syn::{Attribute, LitStr, Path};

/// Container attributes.
#[derive(Default)]
pub struct Container {
    /// `#[persistent(class = "...")]`.
    pub class: Option<LitStr>,
}

/// A field's merge rule.
pub enum Rule {
    Sum,
    Union,
    Ours,
    Theirs,
    Max,
    Min,
    Nested,
    With(Path),
}

/// A field's rule.
pub struct FieldRule {
    pub rule: Rule,
}

pub const RULES: &str = "sum, union, ours, theirs, max, min, nested, with = path::to::fn";

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
            } else {
                Err(meta.error("unknown persistent attribute; expected `class = \"name\"`"))
            }
        });
        if let Err(e) = parsed {
            cx.syn_error(e);
        }
    }
    out
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
                ("sum", (|| Rule::Sum) as fn() -> Rule),
                ("union", || Rule::Union),
                ("ours", || Rule::Ours),
                ("theirs", || Rule::Theirs),
                ("max", || Rule::Max),
                ("min", || Rule::Min),
                ("nested", || Rule::Nested),
            ];
            let rule = if meta.path.is_ident("with") {
                let path: Path = meta.value()?.parse().map_err(|e| {
                    syn::Error::new(e.span(), "expected #[merge(with = path::to::function)]")
                })?;
                Rule::With(path)
            } else if let Some((_, make)) = simple.iter().find(|(n, _)| meta.path.is_ident(n)) {
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
            out = Some(FieldRule { rule });
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
