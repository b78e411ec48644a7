//! The model of the input: a struct with named fields and its attributes.

use crate::attr::{self, Container, FieldRule, SerdeField};
use crate::ctxt::Ctxt;
use syn::{Data, DeriveInput, Fields, Ident, Type};

pub struct Input<'a> {
    pub ident: &'a Ident,
    pub generics: &'a syn::Generics,
    pub attrs: Container,
    pub fields: Vec<Field<'a>>,
    /// Some field is `#[serde(flatten)]`: its top-level keys are not a
    /// fixed list, so unknown fields are checked when written instead.
    pub flatten: bool,
}

pub struct Field<'a> {
    pub ident: &'a Ident,
    pub ty: &'a Type,
    pub rule: Option<FieldRule>,
    pub serde: SerdeField,
}

impl Input<'_> {
    /// True when some field has a merge rule.
    pub fn resolvable(&self) -> bool {
        self.fields
            .iter()
            .any(|f| f.rule.is_some() && f.serde.skipped.is_none())
    }
}

/// Builds the model, or reports why the input is not a struct with named fields.
pub fn parse<'a>(cx: &mut Ctxt, input: &'a DeriveInput, derive: &str) -> Option<Input<'a>> {
    let attrs = attr::container(cx, &input.attrs);
    let named = match &input.data {
        Data::Struct(s) => {
            match &s.fields {
                Fields::Named(named) => named,
                Fields::Unnamed(_) => {
                    cx.error_spanned_by(
                    &s.fields,
                    format!("#[derive({derive})] needs a struct with named fields, not a tuple struct"),
                );
                    return None;
                }
                Fields::Unit => {
                    cx.error_spanned_by(
                    &input.ident,
                    format!("#[derive({derive})] needs a struct with named fields, not a unit struct"),
                );
                    return None;
                }
            }
        }
        Data::Enum(e) => {
            cx.error_spanned_by(
                e.enum_token,
                format!("#[derive({derive})] supports structs with named fields; an enum can be a field of one"),
            );
            return None;
        }
        Data::Union(u) => {
            cx.error_spanned_by(
                u.union_token,
                format!("#[derive({derive})] supports structs with named fields, not unions"),
            );
            return None;
        }
    };
    let fields = named
        .named
        .iter()
        .filter_map(|f| {
            Some(Field {
                ident: f.ident.as_ref()?,
                ty: &f.ty,
                rule: attr::field(cx, &f.attrs),
                serde: attr::serde_field(&f.attrs),
            })
        })
        .collect();
    let flatten = named
        .named
        .iter()
        .any(|f| attr::serde_has(&f.attrs, "flatten"));
    Some(Input {
        ident: &input.ident,
        generics: &input.generics,
        attrs,
        fields,
        flatten,
    })
}
