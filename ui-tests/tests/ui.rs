//! Compile-fail cases of `#[derive(Persistent)]` and `#[merge(...)]`, with
//! their messages pinned in the `.stderr` files beside them.

#[test]
fn derive_misuse_is_rejected() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/derive/*.rs");
    t.compile_fail("tests/ui/merge/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
