//! The wire types: requests as clients send them ([`request`]) and responses
//! and stream chunks as OpenAI's and vLLM's clients parse them ([`response`]).
//! No logic beyond serde lives here; checking is `params`' job.

pub mod request;
pub mod response;

pub use request::{DetokenizeRequest, GenerateRequest, StreamOptions, TokenizeRequest};
pub use response::*;
