//! # fulcrum-kernels — the arithmetic
//!
//! Kernels know nothing about models. Principal pieces:
//! - [`quant`]: GGUF block formats (`BlockQ4_0` … `BlockQ6_K`, the activation
//!   formats `BlockQ8_0`/`BlockQ8_1`/`BlockQ8_K`), dequantization, reference
//!   quantizers and scalar integer dot products (the numerical reference).
//! - [`gemm`]: the batched product `Y[m×n] = X[m×k]·Wᵀ` every linear layer
//!   runs over all tokens of a step ([`gemm::matmul`]), the weights it takes
//!   ([`WeightMatrix`], repacked as [`gemm::PackedMatrix`]), and the scalar
//!   reference product the fast kernels are tested against
//!   ([`matmul_reference`]).
//! - [`attention`]: attention over a paged KV cache for a ragged batch.
//! - [`ops`]: RMS norm, rope, gated activations, softmax.
//! - [`pool`]: the persistent worker pool; [`isa`]: run-time ISA choice.

// Block structs are viewed in place over GGUF (little-endian) bytes.
#[cfg(not(target_endian = "little"))]
compile_error!("fulcrum-kernels needs a little-endian target");

pub mod attention;
mod const_width;
pub mod gemm;
pub mod isa;
pub mod ops;
pub mod pool;
pub mod quant;
pub mod roofline;

pub use fulcrum_gguf::GgmlType;
pub use gemm::{dequantize_matrix_f32, matmul_reference, MatrixError, WeightMatrix};
pub use isa::Isa;
pub use pool::WorkerPool;
pub use quant::{dequantize_row, quantize_row, QuantBlock, WeightBlock};
