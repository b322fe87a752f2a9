//! Service: accounts (being written; see [`super`]).
