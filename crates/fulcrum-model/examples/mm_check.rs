use fulcrum_kernels::gemm::{matmul, MatmulScratch};
use fulcrum_kernels::WorkerPool;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let model = fulcrum_model::Model::load(&args[1]).unwrap();
    let input: Vec<f32> = std::fs::read(&args[2])
        .unwrap()
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let want: Vec<f32> = std::fs::read(&args[3])
        .unwrap()
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let l = &model.weights.layers[0];
    let w = match args[4].as_str() {
        "wo" => &l.wo,
        "wq" => &l.wq,
        "down" => &l.w_down,
        "gate" => &l.w_gate,
        _ => panic!(),
    };
    let m = input.len() / w.cols;
    let mut y = vec![0f32; m * w.rows];
    matmul(
        &WorkerPool::new(1),
        &input,
        m,
        &w.packed,
        &mut y,
        &mut MatmulScratch::default(),
    );
    let (mut maxd, mut at) = (0f32, 0);
    for (i, (a, b)) in y.iter().zip(&want).enumerate() {
        if (a - b).abs() > maxd {
            maxd = (a - b).abs();
            at = i;
        }
    }
    println!("max abs diff {maxd} at {at}: {} vs {}", y[at], want[at]);
}
