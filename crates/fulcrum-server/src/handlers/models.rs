//! `GET /v1/models`: the one model served, under the name clients should
//! send (the first `--served-model-name`, else the `--model` it was loaded by).

use axum::extract::State;
use axum::response::Response;

use super::json;
use crate::error::ApiError;
use crate::protocol::{ModelCard, ModelList};
use crate::state::AppState;

pub async fn list_models(State(state): State<AppState>) -> Result<Response, ApiError> {
    let engine = state.engine()?;
    let card = ModelCard {
        id: state.primary_model_name(),
        object: "model",
        created: state.started_at(),
        owned_by: "fulcrum",
        root: engine.model().name.clone(),
        max_model_len: engine.config().max_model_len(),
    };
    Ok(json(&ModelList {
        object: "list",
        data: vec![card],
    }))
}
