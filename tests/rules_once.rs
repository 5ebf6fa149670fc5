//! The rules file is read exactly once per run: a pipe (`--rules <(cat rules.toml)`)
//! works in both executors, and the summary's hash is that of the bytes evaluated.

use crate::workdir::Workdir;

const RULES: &str = "[columns]\namount = \"float\"\n\n[[rule]]\nid = 1\nname = \"big\"\nwhen = \"amount > 100.0\"\n";

#[test]
fn rules_from_a_pipe_work_in_both_executors_and_are_hashed_as_read() {
    for executor in ["threads", "processes"] {
        let wd = Workdir::new("rules-pipe");
        wd.create("tx.csv", "id,amount\n1,50\n2,500\n");
        wd.create("rules.toml", RULES);
        let mut cmd = std::process::Command::new("bash");
        cmd.current_dir(wd.root()).arg("-c").arg(format!(
            "exec \"$0\" run tx.csv --rules <(cat rules.toml) -o out.csv -q \
             --summary s.json --executor {executor} -j 2"
        ));
        cmd.arg0_txguard();
        wd.output_of(&mut cmd).expect_success();
        assert_eq!(
            wd.read("out.csv"),
            "transaction_id,rule_id,result,detail\n1,1,false,\n2,1,true,\n",
            "{executor}"
        );
        let summary: serde_json::Value = serde_json::from_str(&wd.read("s.json")).unwrap();
        use sha2::Digest;
        let expected: String = sha2::Sha256::digest(RULES.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(summary["rules_sha256"], expected.as_str(), "{executor}");
    }
}

trait Arg0 {
    fn arg0_txguard(&mut self) -> &mut Self;
}

impl Arg0 for std::process::Command {
    /// `bash -c SCRIPT TXGUARD`: the script's `$0` is the binary under test.
    fn arg0_txguard(&mut self) -> &mut Self {
        self.arg(env!("CARGO_BIN_EXE_txguard"))
    }
}
