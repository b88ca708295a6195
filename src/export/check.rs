//! The export check: what was written, loaded back and compared with the
//! model as trained.
