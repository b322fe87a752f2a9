//! Service: resources (being written; see [`super`]).
