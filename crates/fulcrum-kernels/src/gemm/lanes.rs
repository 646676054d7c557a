//! Lane patterns shared by the kernels: which scale each of the 16 i32/f32
//! lanes of a 64-byte vector uses (a lane covers 4 consecutive bytes).

/// Full group, one scale per 32-weight block: lane → block.
pub const FULL_PER32: [u32; 16] = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3];
/// Full group, per-16 scales ordered `b0 low, b0 high, b1 low, …`: low vector.
pub const FULL_PER16_LO: [u32; 16] = [0, 0, 0, 0, 2, 2, 2, 2, 4, 4, 4, 4, 6, 6, 6, 6];
/// … and high vector.
pub const FULL_PER16_HI: [u32; 16] = [1, 1, 1, 1, 3, 3, 3, 3, 5, 5, 5, 5, 7, 7, 7, 7];
/// Half group `[b0 low, b1 low, b0 high, b1 high]`, per-32 scales.
pub const HALF_PER32: [u32; 16] = [0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1];
/// Half group, per-16 scales `b0 low, b0 high, b1 low, b1 high`.
pub const HALF_PER16: [u32; 16] = [0, 0, 0, 0, 2, 2, 2, 2, 1, 1, 1, 1, 3, 3, 3, 3];
