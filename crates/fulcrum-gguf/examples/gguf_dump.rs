//! Prints a GGUF file's metadata (arrays abbreviated) and tensor table.
//! `cargo run -p fulcrum-gguf --example gguf_dump -- FILE.gguf`
use fulcrum_gguf::{GgufFile, MetadataValue};

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: gguf_dump FILE.gguf");
        std::process::exit(2);
    };
    let f = match GgufFile::open(&path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "GGUF v{} alignment {} data at {}",
        f.version, f.alignment, f.data_offset
    );
    for (k, v) in f.metadata.iter() {
        match v {
            MetadataValue::Array(t, items) => println!("{k}: array of {} {t:?}", items.len()),
            MetadataValue::String(s) if s.len() > 120 => {
                println!("{k}: {:?}…", &s[..s.floor_char_boundary_compat(120)])
            }
            other => println!("{k}: {other:?}"),
        }
    }
    for t in &f.tensors {
        println!("{:40} {:6} {:?}", t.name, t.ty.name(), t.dims);
    }
}

trait FloorBoundary {
    fn floor_char_boundary_compat(&self, i: usize) -> usize;
}
impl FloorBoundary for String {
    fn floor_char_boundary_compat(&self, mut i: usize) -> usize {
        while !self.is_char_boundary(i) {
            i -= 1;
        }
        i
    }
}
