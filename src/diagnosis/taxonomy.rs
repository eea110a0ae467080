//! The shape every closed taxonomy of triage shares, written once: a fieldless enum whose
//! variants each carry a stable token, declared as one table so that nothing about a variant
//! can be added in one place only.
//!
//! Hand-kept lists drift: an `ALL` array that misses a variant compiles, passes every test that
//! iterates it, and then panics where a per-variant array is indexed by the missing one. Here
//! the variant list is written once and everything that enumerates it is generated from it,
//! as linkerd2-proxy's error enums and Envoy's response-flag table do.

/// Declares a closed taxonomy from one table of `Variant => "token"` entries.
///
/// It generates the enum (attributes and doc comments pass through), and on it:
/// - `COUNT` and `ALL` (every variant in declaration order, so `ALL[v.index()] == v`);
/// - `token()`, the stable token, and `index()`, the variant's position in `ALL`;
/// - `FromStr` from the token, with the named error type for a token that names no variant
///   (a token written twice does not compile: its second match arm is unreachable);
/// - `Index<Enum>` for `[T; Enum::COUNT]`, so per-variant arrays are typed by the count and
///   indexed by the variant: neither can disagree with the enum.
///
/// With `row: Row,` every entry also carries `{ field: value, ... }`, a literal of the struct
/// `Row` holding the variant's other attributes; the private `const fn row()` returns it. The
/// struct literal is what makes every attribute required: a missing or unknown field does not
/// compile. A new attribute is one field of `Row` and one line per entry.
macro_rules! taxonomy {
    (
        $(#[$meta:meta])*
        $vis:vis enum $Name:ident {
            unknown: $Unknown:ident,
            row: $Row:ident,
            $(
                $(#[$variant_meta:meta])*
                $Variant:ident => $token:literal { $($row:tt)* }
            ),+ $(,)?
        }
    ) => {
        $crate::diagnosis::taxonomy::taxonomy! {
            $(#[$meta])*
            $vis enum $Name {
                unknown: $Unknown,
                $( $(#[$variant_meta])* $Variant => $token, )+
            }
        }

        impl $Name {
            /// This variant's row of the table, one `'static` constant per variant.
            #[inline]
            const fn row(self) -> &'static $Row {
                match self {
                    $(
                        $Name::$Variant => {
                            const ROW: $Row = $Row { $($row)* };
                            &ROW
                        }
                    )+
                }
            }
        }
    };
    (
        $(#[$meta:meta])*
        $vis:vis enum $Name:ident {
            unknown: $Unknown:ident,
            $(
                $(#[$variant_meta:meta])*
                $Variant:ident => $token:literal
            ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis enum $Name {
            $( $(#[$variant_meta])* $Variant, )+
        }

        impl $Name {
            /// How many variants there are.
            pub const COUNT: usize = [$($token),+].len();

            /// Every variant, in declaration order: `ALL[v.index()] == v`.
            pub const ALL: [$Name; $Name::COUNT] = [$($Name::$Variant),+];

            /// The stable token: never renamed, since operators match on it.
            #[inline]
            pub const fn token(self) -> &'static str {
                match self {
                    $( $Name::$Variant => $token, )+
                }
            }

            /// The variant's position in `ALL`, for arrays with one slot per variant.
            #[inline]
            pub const fn index(self) -> usize {
                self as usize
            }
        }

        // The macro writes no explicit discriminants, so each is the variant's position; the
        // `Index` impl below relies on it, and the compiler checks it rather than a comment.
        const _: () = {
            let mut i = 0;
            while i < $Name::COUNT {
                assert!($Name::ALL[i].index() == i);
                i += 1;
            }
        };

        #[doc = concat!("A token that names no [`", stringify!($Name), "`].")]
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        $vis struct $Unknown;

        impl ::std::fmt::Display for $Unknown {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(concat!("not a ", stringify!($Name), " token"))
            }
        }

        impl ::std::error::Error for $Unknown {}

        impl ::std::str::FromStr for $Name {
            type Err = $Unknown;

            // A duplicated token makes its second arm unreachable: a compile error, not a
            // variant that can never be parsed.
            #[deny(unreachable_patterns)]
            fn from_str(token: &str) -> Result<$Name, $Unknown> {
                match token {
                    $( $token => Ok($Name::$Variant), )+
                    _ => Err($Unknown),
                }
            }
        }

        impl<T> ::std::ops::Index<$Name> for [T; $Name::COUNT] {
            type Output = T;

            #[inline]
            fn index(&self, variant: $Name) -> &T {
                // In bounds: `index()` is below `COUNT` for every variant (checked above).
                &self[variant.index()]
            }
        }
    };
}

pub(crate) use taxonomy;
