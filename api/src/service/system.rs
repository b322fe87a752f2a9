//! Service: system (being written; see [`super`]).
