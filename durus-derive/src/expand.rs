//! Code generation from the checked model.

use crate::ast::{self, Field, Input};
use crate::attr::{Bound, KeyRule, Rule};
use crate::check;
use crate::ctxt::Ctxt;
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::DeriveInput;

fn model<'a>(input: &'a DeriveInput, derive: &str) -> Result<Input<'a>, TokenStream> {
    let mut cx = Ctxt::default();
    let parsed = ast::parse(&mut cx, input, derive);
    if let Some(parsed) = &parsed {
        check::check(&mut cx, parsed);
    }
    match (cx.check(), parsed) {
        (Ok(()), Some(parsed)) => Ok(parsed),
        (Err(e), _) => Err(e.to_compile_error()),
        (Ok(()), None) => Err(quote!(compile_error!("invalid input");)),
    }
}

/// `#[derive(Persistent)]`.
pub fn persistent(input: &DeriveInput) -> TokenStream {
    let model = match model(input, "Persistent") {
        Ok(model) => model,
        Err(errors) => return errors,
    };
    let ident = model.ident;
    let generics = with_serde_bounds(model.generics, ident);
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let class = match &model.attrs.class {
        Some(lit) => quote!(#lit),
        None => quote!(::core::concat!(
            ::core::module_path!(),
            "::",
            ::core::stringify!(#ident)
        )),
    };
    let aliases = if model.attrs.aliases.is_empty() {
        TokenStream::new()
    } else {
        let aliases = &model.attrs.aliases;
        quote!(const CLASS_ALIASES: &'static [&'static str] = &[#(#aliases),*];)
    };
    let flattened = if model.flatten {
        quote!(
            const FLATTENED: bool = true;
        )
    } else {
        TokenStream::new()
    };
    let resolution = if model.resolvable() {
        let snapshot = quote_spanned! {ident.span()=>
            <Self as ::durus_core::__private::merge::Snapshot>::snapshot_copy(self)
        };
        quote! {
            const RESOLVABLE: bool = true;

            fn snapshot(&self) -> ::core::option::Option<Self> {
                ::core::option::Option::Some(#snapshot)
            }

            fn resolve(
                ours: &Self,
                stored: &Self,
                initial: &Self,
            ) -> ::core::result::Result<Self, ::durus_core::MergeConflict> {
                <Self as ::durus_core::__private::merge::Merge>::merge(ours, stored, initial)
            }
        }
    } else {
        TokenStream::new()
    };
    let merge_impl = if model.resolvable() {
        merge_impl(&model)
    } else {
        TokenStream::new()
    };
    quote! {
        const _: () = {
            impl #impl_generics ::durus_core::Persistent for #ident #ty_generics #where_clause {
                const CLASS_NAME: &'static str = #class;
                #aliases
                #flattened
                #resolution
            }
            #merge_impl
        };
    }
}

/// A generic type is `Persistent` where it can be serialized: the bound
/// goes on the impl so that users need not repeat serde's bounds.
fn with_serde_bounds(generics: &syn::Generics, ident: &syn::Ident) -> syn::Generics {
    let mut generics = generics.clone();
    if generics.params.is_empty() {
        return generics;
    }
    let (_, ty_generics, _) = generics.split_for_impl();
    let ty_generics = quote!(#ty_generics);
    let predicate: syn::WherePredicate = syn::parse_quote! {
        #ident #ty_generics: ::durus_core::__private::serde::Serialize
            + ::durus_core::__private::serde::de::DeserializeOwned
            + 'static
    };
    generics.make_where_clause().predicates.push(predicate);
    generics
}

/// `#[derive(Merge)]`.
pub fn merge(input: &DeriveInput) -> TokenStream {
    match model(input, "Merge") {
        Ok(model) => {
            let body = merge_impl(&model);
            quote!(const _: () = { #body };)
        }
        Err(errors) => errors,
    }
}

fn merge_impl(model: &Input<'_>) -> TokenStream {
    let ident = model.ident;
    let (impl_generics, ty_generics, where_clause) = model.generics.split_for_impl();
    let fields = model.fields.iter().map(field_merge);
    quote! {
        impl #impl_generics ::durus_core::__private::merge::Merge for #ident #ty_generics #where_clause {
            fn merge(
                ours: &Self,
                stored: &Self,
                initial: &Self,
            ) -> ::core::result::Result<Self, ::durus_core::MergeConflict> {
                ::core::result::Result::Ok(Self { #(#fields,)* })
            }
        }
    }
}

/// A bound of a sum, as `Some(literal)` spanned on the literal, or `None`.
fn bound(b: &Option<Box<Bound>>) -> TokenStream {
    match b {
        Some(b) => {
            let e = &b.expr;
            quote_spanned!(e.span()=> ::core::option::Option::Some(#e))
        }
        None => quote!(::core::option::Option::None),
    }
}

fn field_merge(field: &Field<'_>) -> TokenStream {
    let name = field.ident;
    let args = quote!(&ours.#name, &stored.#name, &initial.#name);
    let span = field.ty.span();
    let m = quote_spanned!(span=> ::durus_core::__private::merge);
    let rule = match field.serde.skipped {
        // Not stored: the stored side holds only a default, so there is
        // nothing to merge with; this client's value stays.
        Some(_) => None,
        None => field.rule.as_ref().map(|r| &r.rule),
    };
    let call = match rule {
        None if field.serde.skipped.is_some() => quote_spanned!(span=> #m::ours(#args)),
        None => quote_spanned!(span=> #m::three_way(#args)),
        Some(Rule::Sum {
            min: None,
            max: None,
        }) => quote_spanned!(span=> #m::sum(#args)),
        Some(Rule::Sum { min, max }) => {
            let (min, max) = (bound(min), bound(max));
            quote_spanned!(span=> #m::sum_within(#args, #min, #max))
        }
        Some(Rule::PerKey(rule)) => {
            let k = quote_spanned!(span=> ::durus_core::__private::per_key);
            let each = match rule {
                KeyRule::Same => quote_spanned!(span=> #k::same),
                KeyRule::Nested => quote_spanned!(span=> #k::nested),
                KeyRule::Sum {
                    min: None,
                    max: None,
                } => quote_spanned!(span=> #k::sum),
                KeyRule::Sum { min, max } => {
                    let (min, max) = (bound(min), bound(max));
                    quote_spanned!(span=> |o, s, i| #k::sum_within(o, s, i, #min, #max))
                }
            };
            quote_spanned!(span=> #k::merge_map(#args, #each))
        }
        Some(Rule::Same) => quote_spanned!(span=> #m::same(#args)),
        Some(Rule::Union) => quote_spanned!(span=> #m::union(#args)),
        Some(Rule::Ours) => quote_spanned!(span=> #m::ours(#args)),
        Some(Rule::Theirs) => quote_spanned!(span=> #m::theirs(#args)),
        Some(Rule::Max) => quote_spanned!(span=> #m::max(#args)),
        Some(Rule::Min) => quote_spanned!(span=> #m::min(#args)),
        Some(Rule::Nested) => quote_spanned!(span=> #m::nested(#args)),
        Some(Rule::With(path)) => {
            let m = quote_spanned!(path.span()=> ::durus_core::__private::merge);
            quote_spanned!(path.span()=> #m::with(#path, #args))
        }
    };
    quote! {
        #name: #call.map_err(|e| #m::in_field(::core::stringify!(#name), e))?
    }
}
