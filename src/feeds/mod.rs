pub mod xfr;
