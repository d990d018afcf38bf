//! `stateless!`: a layer with no parameters (an activation, a reshape, a pooling) in one
//! declaration: the struct, its `Module` derive and its `Forward` impl.

/// Declares a parameterless layer: `Name, |self, x| body` for a unit struct, or
/// `Name(field: Type, ...), |self, x| body` for one with public settings.
macro_rules! stateless {
    ($(#[$doc:meta])* $name:ident, |$s:ident, $x:ident| $body:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Module)]
        pub struct $name;
        stateless!(@impl $name, |$s, $x| $body);
    };
    ($(#[$doc:meta])* $name:ident ( $($field:ident: $ty:ty),* ), |$s:ident, $x:ident| $body:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Module)]
        pub struct $name { $(#[allow(missing_docs)] #[module(skip)] pub $field: $ty),* }
        stateless!(@impl $name, |$s, $x| $body);
    };
    (@impl $name:ident, |$s:ident, $x:ident| $body:expr) => {
        impl Forward for $name {
            #[track_caller]
            fn forward(&self, $x: &Tensor) -> Tensor {
                let $s = self;
                $body
            }
        }
    };
}

pub(crate) use stateless;
