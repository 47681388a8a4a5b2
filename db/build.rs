//! `sqlx::migrate!` embeds `migrations/` at compile time, but cargo does not know the macro reads that directory:
//! without this, a new migration file was not embedded until something else in this crate changed.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
