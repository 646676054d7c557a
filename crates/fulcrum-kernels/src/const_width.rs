//! A run-time width as a compile-time constant, for kernels whose register
//! arrays are sized by a const parameter (tokens of a matrix-product tile,
//! query heads of an attention pass): the dispatch written once.

/// Evaluates `$body` with `$c` a `const usize` equal to `$n`, which must be
/// 1 to 8; each width is its own instantiation of whatever `$body` calls.
///
/// ```text
/// const_width!(tokens, C => kernel::<C>(args))
/// ```
macro_rules! const_width {
    ($n:expr, $c:ident => $body:expr) => {
        match $n {
            1 => {
                const $c: usize = 1;
                $body
            }
            2 => {
                const $c: usize = 2;
                $body
            }
            3 => {
                const $c: usize = 3;
                $body
            }
            4 => {
                const $c: usize = 4;
                $body
            }
            5 => {
                const $c: usize = 5;
                $body
            }
            6 => {
                const $c: usize = 6;
                $body
            }
            7 => {
                const $c: usize = 7;
                $body
            }
            8 => {
                const $c: usize = 8;
                $body
            }
            other => unreachable!("widths are 1 to 8, not {other}"),
        }
    };
}

pub(crate) use const_width;
