//! Checks across attributes that parsing alone cannot make.

use crate::ast::Input;
use crate::ctxt::Ctxt;

pub fn check(cx: &mut Ctxt, input: &Input<'_>) {
    if let Some(class) = &input.attrs.class {
        let name = class.value();
        if name.contains('\n') {
            cx.error_spanned_by(class, "the class name cannot contain a newline");
        }
    }
    let class = input.attrs.class.as_ref().map(|c| c.value());
    let mut seen: Vec<String> = Vec::new();
    for alias in &input.attrs.aliases {
        let name = alias.value();
        if name.is_empty() || name.contains('\n') {
            cx.error_spanned_by(alias, "an alias is a class name: not empty, no newline");
        } else if class.as_deref() == Some(name.as_str()) {
            cx.error_spanned_by(alias, "this alias is the class name itself; remove it");
        } else if seen.contains(&name) {
            cx.error_spanned_by(alias, "this alias is listed twice");
        }
        seen.push(name);
    }
    for field in &input.fields {
        if let (Some(rule), Some(_)) = (&field.rule, field.serde.skipped) {
            cx.syn_error(syn::Error::new(
                rule.span,
                "a field skipped by serde is not stored, so it is never merged (the merge keeps \
                 this client's value); remove the #[merge(...)] rule",
            ));
        }
    }
}
