//! REST handlers, one module per area.

pub mod audit;
pub mod auth;
pub mod backup;
pub mod health;
pub mod openapi;
pub mod resources;
pub mod sync;
pub mod system;
pub mod tokens;
pub mod users;
