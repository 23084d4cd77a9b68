//! Replays every input of the checked-in fuzz corpora (`testdata/fuzz/<target>/`), seeds and
//! crash reproducers alike, through the same checks the fuzz targets run.

use std::path::Path;

use rbk_engine::fuzzing::TARGETS;

#[test]
fn every_corpus_input_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/fuzz");
    for (name, check) in TARGETS {
        let dir = root.join(name);
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        inputs.sort();
        assert!(!inputs.is_empty(), "corpus {} is empty", dir.display());
        for input in inputs {
            let bytes = std::fs::read(&input).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&bytes));
            assert!(outcome.is_ok(), "{name}: {} fails", input.display());
        }
    }
}
