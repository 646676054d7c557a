//! A weight tensor as a GGUF file stores it: what [`super::PackedMatrix::pack`]
//! repacks for the fast kernels and [`super::matmul_reference`] multiplies
//! as it is.

use thiserror::Error;

use crate::quant::GgmlType;

/// A borrowed weight matrix in its stored (possibly quantized) form.
///
/// Build it with [`WeightMatrix::new`], which checks that `data` has exactly
/// the bytes of `rows × cols` values of `ty`. The fields are public for
/// pattern matching and cheap access; kernels re-check the invariant.
#[derive(Clone, Copy, Debug)]
pub struct WeightMatrix<'a> {
    pub ty: GgmlType,
    /// `n`: output features, one stored row each.
    pub rows: usize,
    /// `k`: input features, a multiple of `ty.block_size()`.
    pub cols: usize,
    /// `[rows, row_bytes]`, GGUF encoding.
    pub data: &'a [u8],
}

/// Why bytes cannot be a weight matrix of the stated shape.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum MatrixError {
    #[error("{ty} rows of {cols} columns are not a whole number of {block_size}-value blocks")]
    PartialBlock {
        ty: GgmlType,
        cols: usize,
        block_size: usize,
    },
    #[error("a {rows}×{cols} {ty} matrix does not fit in memory addresses")]
    TooLarge {
        ty: GgmlType,
        rows: usize,
        cols: usize,
    },
    #[error("a {rows}×{cols} {ty} matrix takes {expected} bytes, got {actual}")]
    DataLength {
        ty: GgmlType,
        rows: usize,
        cols: usize,
        expected: usize,
        actual: usize,
    },
}

impl<'a> WeightMatrix<'a> {
    /// Checks that `data` holds exactly `rows × cols` values of `ty`.
    pub fn new(
        ty: GgmlType,
        rows: usize,
        cols: usize,
        data: &'a [u8],
    ) -> Result<Self, MatrixError> {
        let w = WeightMatrix {
            ty,
            rows,
            cols,
            data,
        };
        w.validate()?;
        Ok(w)
    }

    /// Re-checks the invariant [`WeightMatrix::new`] establishes.
    pub fn validate(&self) -> Result<(), MatrixError> {
        let WeightMatrix {
            ty,
            rows,
            cols,
            data,
        } = *self;
        let row_bytes = ty.bytes_for(cols as u64).ok_or(MatrixError::PartialBlock {
            ty,
            cols,
            block_size: ty.block_size(),
        })?;
        let expected = usize::try_from(row_bytes)
            .ok()
            .and_then(|b| b.checked_mul(rows))
            .ok_or(MatrixError::TooLarge { ty, rows, cols })?;
        if data.len() != expected {
            return Err(MatrixError::DataLength {
                ty,
                rows,
                cols,
                expected,
                actual: data.len(),
            });
        }
        Ok(())
    }

    /// Bytes of one stored row.
    pub fn row_bytes(&self) -> usize {
        self.cols / self.ty.block_size() * self.ty.type_size()
    }

    /// The stored bytes of row `i`.
    ///
    /// # Panics
    /// If `i >= rows`.
    pub fn row(&self, i: usize) -> &'a [u8] {
        let rb = self.row_bytes();
        &self.data[i * rb..(i + 1) * rb]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructor_rejects_bad_shapes() {
        let data = vec![0u8; 144];
        assert_eq!(
            WeightMatrix::new(GgmlType::Q4_K, 1, 100, &data).unwrap_err(),
            MatrixError::PartialBlock {
                ty: GgmlType::Q4_K,
                cols: 100,
                block_size: 256
            }
        );
        assert_eq!(
            WeightMatrix::new(GgmlType::Q4_K, 2, 256, &data).unwrap_err(),
            MatrixError::DataLength {
                ty: GgmlType::Q4_K,
                rows: 2,
                cols: 256,
                expected: 288,
                actual: 144
            }
        );
        assert!(matches!(
            WeightMatrix::new(GgmlType::Q8_0, usize::MAX, 32, &data).unwrap_err(),
            MatrixError::TooLarge { .. }
        ));
        let err = WeightMatrix::new(GgmlType::Q4_K, 2, 256, &data).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a 2×256 Q4_K matrix takes 288 bytes, got 144"
        );
        let w = WeightMatrix::new(GgmlType::Q4_K, 1, 256, &data).unwrap();
        assert_eq!((w.row_bytes(), w.row(0).len()), (144, 144));
    }
}
