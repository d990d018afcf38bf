//! The shared shape of every options type: a builder method per PyTorch keyword.

/// Builder methods for an options type, one per PyTorch keyword, each with an example
/// that sets it and checks the field (`$check`, with the options bound to `o`).
macro_rules! setters {
    ($ty:ident {
        $($(#[$doc:meta])* $field:ident($arg:ty) => $store:expr, example $example:expr => $check:expr;)*
    }) => {
        impl $ty {
            $(
                $(#[$doc])*
                ///
                /// ```
                #[doc = concat!(
                    "let o = tapegrad_ops::", stringify!($ty), "::default().",
                    stringify!($field), "(", stringify!($example), ");"
                )]
                #[doc = concat!("assert!(", stringify!($check), ");")]
                /// ```
                pub fn $field(mut self, $field: $arg) -> Self {
                    self.$field = $store;
                    self
                }
            )*
        }
    };
}

pub(crate) use setters;
