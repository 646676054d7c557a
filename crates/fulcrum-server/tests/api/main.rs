//! End-to-end tests of `fulcrum serve`'s API: a real server on an ephemeral
//! loopback port, the real SmolLM2 model, and a real OpenAI client.
//! One test binary (one link) with a module per concern.

mod common;
mod errors;
mod lifecycle;
mod load;
mod metrics;
mod openai_client;
