//! Keeping lists current: sources (files, HTTP feeds, RPZ zone transfers), the updater that
//! swaps new versions in one list at a time, and the last good copies in the state folder.

pub mod http;
pub mod manager;
pub mod xfr;
