//! Which vector instructions this CPU has, asked in one place, and the one macro that
//! compiles a kernel a second time with them and picks between the two at run time.
//!
//! Every fast kernel of the workspace has a portable form, which the tests compare it with;
//! the fast form is the same code compiled with `#[target_feature]`, so it may only run
//! where [`available`] says the CPU has those features.

/// Whether this CPU has the instruction sets `features` names, in `#[target_feature]`'s
/// spelling: `"avx2"` or `"avx2,fma"` (the two the kernels use). Anything else: `false`.
pub fn available(features: &str) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = std::arch::is_x86_feature_detected!("avx2");
        match features {
            "avx2" => avx2,
            "avx2,fma" => avx2 && std::arch::is_x86_feature_detected!("fma"),
            _ => false,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = features;
        false
    }
}

/// Defines `fn $name(args)`, which runs `$fast` compiled with the target features
/// `$features` where [`available`] says the CPU has them, and `$portable` elsewhere:
///
/// ```ignore
/// lstm_core::dispatch!(
///     /// Docs of the kernel.
///     pub(crate) fn conv(x: &[f32], out: &mut [f32]) with "avx2,fma"
///         => conv_impl::<true>(x, out), else conv_impl::<false>(x, out)
/// );
/// ```
///
/// The fast form is a function of its own, never inlined: the features apply to all it
/// inlines (the kernels below it are `#[inline(always)]`), and its `&mut` slices tell the
/// compiler they cannot overlap, which it needs to vectorise.
#[macro_export]
macro_rules! dispatch {
    (
        $(#[$attr:meta])*
        $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) with $features:literal
            => $fast:expr, else $portable:expr
    ) => {
        $(#[$attr])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            if $crate::simd::available($features) {
                /// # Safety
                /// The CPU must have the target features it is compiled with.
                #[allow(clippy::too_many_arguments)]
                #[target_feature(enable = $features)]
                #[inline(never)]
                unsafe fn fast($($arg: $ty),*) {
                    $fast
                }
                // SAFETY: the CPU has these features, checked just above.
                return unsafe { fast($($arg),*) };
            }
            $portable
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_are_asked_as_target_feature_spells_them() {
        // FMA comes with AVX2 here or not at all; no CPU has an unknown set.
        assert!(!available("avx2,fma") || available("avx2"));
        assert!(!available("fma,avx2"));
        assert!(!available("nonsense"));
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            available("avx2,fma"),
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
        );
    }
}
