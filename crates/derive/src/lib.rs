//! `#[derive(Module)]` for tapegrad: the visitors of `tapegrad::nn::Module` written from a
//! struct's fields, so a model lists its parameters, buffers and submodules, and passes
//! train/eval on, without a line of hand-written code.
//!
//! Each field is visited through `tapegrad::nn::ModuleField` under its own name (PyTorch's
//! state-dict names: `layers.0.weight`):
//! - a `Tensor` is a parameter, or a buffer with `#[module(buffer)]`;
//! - a type implementing `Module` is a submodule;
//! - `Vec`s and `Option`s of these (`Vec` entries named `0`, `1`, ...; `None` skipped);
//! - a `TrainingFlag` follows train/eval;
//! - numbers, `bool`, `String` hold nothing; any other type needs `#[module(skip)]`.
//!
//! Attributes: `#[module(skip)]`, `#[module(buffer)]`, `#[module(name = "weight")]` on fields;
//! `#[module(crate = "path")]` on the struct when the nn crate is not reached as
//! `tapegrad::nn` (inside tapegrad-nn it is found by itself).
//!
//! The examples are in `tapegrad_nn::Module`'s documentation, where they can run.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote};
use syn::{Data, DeriveInput, Fields, LitStr, Path, parse_macro_input, spanned::Spanned};

/// Writes `Module::visit`, `Module::visit_mut` and `Module::set_training` from the fields.
#[proc_macro_derive(Module, attributes(module))]
pub fn derive_module(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(input).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// How one field is visited.
enum Role {
    Skip,
    Visit { name: String, buffer: bool },
}

/// The container's `#[module(crate = "...")]`, or the path the calling package reaches the
/// nn crate by.
fn crate_path(input: &DeriveInput) -> syn::Result<Path> {
    let mut path = None;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("module")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("crate") {
                let lit: LitStr = meta.value()?.parse()?;
                path = Some(lit.parse::<Path>()?);
                Ok(())
            } else {
                Err(meta.error("expected `crate = \"path\"` on the struct"))
            }
        })?;
    }
    if let Some(path) = path {
        return Ok(path);
    }
    // tapegrad-nn's own layers, tests and doc examples reach it by its own name (the library
    // declares `extern crate self as tapegrad_nn`); everyone else through the facade.
    let own = std::env::var("CARGO_PKG_NAME").is_ok_and(|n| n == "tapegrad-nn");
    Ok(if own { syn::parse_quote!(::tapegrad_nn) } else { syn::parse_quote!(::tapegrad::nn) })
}

fn field_role(field: &syn::Field, default_name: String) -> syn::Result<Role> {
    let (mut skip, mut buffer, mut name) = (false, false, default_name);
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("module")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("skip") {
                skip = true;
            } else if meta.path.is_ident("buffer") {
                buffer = true;
            } else if meta.path.is_ident("name") {
                name = meta.value()?.parse::<LitStr>()?.value();
            } else {
                return Err(meta.error("expected `skip`, `buffer` or `name = \"...\"`"));
            }
            Ok(())
        })?;
    }
    if skip && buffer {
        return Err(syn::Error::new(field.span(), "a field cannot be both `skip` and `buffer`"));
    }
    Ok(if skip { Role::Skip } else { Role::Visit { name, buffer } })
}

fn expand(input: DeriveInput) -> syn::Result<TokenStream2> {
    let krate = crate_path(&input)?;
    let fields = match &input.data {
        Data::Struct(data) => &data.fields,
        _ => {
            return Err(syn::Error::new(
                Span::call_site(),
                "#[derive(Module)] needs a struct; write `impl Module` by hand for enums",
            ));
        }
    };
    let (mut visit, mut visit_mut, mut training) = (Vec::new(), Vec::new(), Vec::new());
    let members: Vec<(syn::Member, String, &syn::Field)> = match fields {
        Fields::Named(named) => named
            .named
            .iter()
            .map(|f| {
                let ident = f.ident.clone().expect("named field");
                let name = ident.to_string().trim_start_matches("r#").to_string();
                (syn::Member::Named(ident), name, f)
            })
            .collect(),
        Fields::Unnamed(unnamed) => unnamed
            .unnamed
            .iter()
            .enumerate()
            .map(|(i, f)| (syn::Member::Unnamed(i.into()), i.to_string(), f))
            .collect(),
        Fields::Unit => Vec::new(),
    };
    let api = quote!(#krate::__derive);
    let mut names: Vec<String> = Vec::new();
    for (member, default_name, field) in members {
        let Role::Visit { name, buffer } = field_role(field, default_name)? else { continue };
        if names.contains(&name) {
            return Err(syn::Error::new(
                field.span(),
                format!("two fields are named `{name}` in the state dict; rename one"),
            ));
        }
        names.push(name.clone());
        let slot = if buffer { quote!(#api::Slot::Buffer) } else { quote!(#api::Slot::Parameter) };
        let ty = &field.ty;
        visit.push(quote! {
            <#ty as #api::ModuleField>::visit_field(
                &self.#member, &#api::join_name(prefix, #name), #slot, f);
        });
        visit_mut.push(quote! {
            <#ty as #api::ModuleField>::visit_field_mut(
                &mut self.#member, &#api::join_name(prefix, #name), #slot, f);
        });
        training.push(quote! {
            <#ty as #api::ModuleField>::set_training_field(&self.#member, training);
        });
    }
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let (f, prefix, training_arg) =
        (format_ident!("f"), format_ident!("prefix"), format_ident!("training"));
    Ok(quote! {
        #[automatically_derived]
        impl #impl_generics #api::Module for #name #ty_generics #where_clause {
            #[allow(unused_variables)]
            fn visit(
                &self,
                #prefix: &str,
                #f: &mut dyn FnMut(&str, &#api::Tensor, #api::Slot),
            ) {
                #(#visit)*
            }
            #[allow(unused_variables)]
            fn visit_mut(
                &mut self,
                #prefix: &str,
                #f: &mut dyn FnMut(&str, &mut #api::Tensor, #api::Slot),
            ) {
                #(#visit_mut)*
            }
            #[allow(unused_variables)]
            fn set_training(&self, #training_arg: bool) {
                #(#training)*
            }
        }
    })
}
