// A Receipt proves a gate set passed; nothing outside batpak may build one.
use batpak_types::guard::Receipt;

fn main() {
    let _forged: Receipt<u32> = Receipt::issue(7, Vec::new());
}
