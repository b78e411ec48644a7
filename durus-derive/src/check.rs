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
}
