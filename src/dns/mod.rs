//! DNS serving: the request handler (the pipeline), the answer cache, upstream resolution and
//! synthesized block answers.

pub mod answer;
pub mod cache;
pub mod handler;
pub mod upstream;
