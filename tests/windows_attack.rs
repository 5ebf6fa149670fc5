//! What a second adversarial review of `[windows.*]` and `[lists.*]` found, each checked
//! against values worked out by hand.

use crate::workdir::Workdir;

/// Finite amounts that add up past `f64::MAX` (two of 1e308) made the running sum inf
/// and its compensation -inf: the sum and the average were NaN, and stayed NaN while the
/// window held any row, long after those amounts had left (rows 5 to 7 saw NaN for a
/// window of 2.0, 0.25 and 0.5).
#[test]
fn a_float_sum_past_the_largest_float_is_inf_and_comes_back_when_its_rows_leave() {
    let wd = Workdir::new("attack-sum-overflow");
    wd.rules(
        "[columns]\namount = \"float\"\n\
         [windows.s]\nkey = \"account\"\ntime = \"timestamp\"\nspan = \"10s\"\nfunction = \"sum\"\nof = \"amount\"\n\
         [windows.a]\nkey = \"account\"\ntime = \"timestamp\"\nspan = \"10s\"\nfunction = \"avg\"\nof = \"amount\"\n\
         [[rule]]\nid = 1\nname = \"r\"\nwhen = \"true\"\nreason = \"{s} {a}\"\n",
    );
    wd.create(
        "tx.csv",
        "id,account,timestamp,amount\n\
         1,A,2026-01-01T00:00:00Z,1e308\n\
         2,A,2026-01-01T00:00:01Z,1e308\n\
         3,A,2026-01-01T00:00:02Z,-1e308\n\
         4,A,2026-01-01T00:00:03Z,1.5\n\
         5,A,2026-01-01T00:00:11.5Z,2\n\
         6,A,2026-01-01T00:00:12.5Z,0.25\n\
         7,A,2026-01-01T00:00:13.5Z,0.5\n\
         8,B,2026-01-01T00:00:13.5Z,-1e308\n\
         9,B,2026-01-01T00:00:14Z,-1e308\n",
    );
    wd.run(&["run", "tx.csv", "--rules", "rules.toml", "-q"])
        .expect_success()
        .expect_stdout(
            "transaction_id,rule_id,result,detail\n\
             1,1,true,1e308 1e308\n\
             2,1,true,inf inf\n\
             3,1,true,1e308 3.333333333333333e307\n\
             4,1,true,1e308 2.5e307\n\
             5,1,true,-1e308 -3.333333333333333e307\n\
             6,1,true,3.75 1.25\n\
             7,1,true,2.75 0.9166666666666666\n\
             8,1,true,-1e308 -1e308\n\
             9,1,true,-inf -inf\n",
        );
}

/// A list keeps the first lines of its first 65,536 keys only (a million-key list would
/// otherwise hold its keys twice): a duplicate of a later key said "(first on line 0)".
#[test]
fn a_duplicate_key_past_the_first_65536_names_the_line_of_its_first() {
    let wd = Workdir::new("attack-list-duplicate-line");
    let mut list = String::from("merchant,risk\n");
    for i in 0..70_000 {
        list.push_str(&format!("m{i},{}\n", i % 100));
    }
    // Line 70,001 holds m69999. A key first on a line whose value is bad (m70000 on line
    // 70,004) is first taken on its next line.
    list.push_str("m69999,5\nm42,1\nm70000,high\nm70000,1\nm70000,2\n");
    wd.create("risk.csv", list);
    wd.rules(
        "[lists.risk]\nfile = \"risk.csv\"\nkey = \"merchant\"\nvalue = \"risk\"\ntype = \"int\"\n\
         [[rule]]\nid = 1\nname = \"r\"\nwhen = \"(risk[merchant] ?? 0) > 50\"\n",
    );
    wd.run(&["check", "rules.toml"]).expect_code(1).expect_stderr(
        "txguard: error: rules.toml has 4 errors:\n  \
         rules.toml:1: [lists.risk]: risk.csv:70002: column \"merchant\": duplicate key \"m69999\" (first on line 70001)\n  \
         rules.toml:1: [lists.risk]: risk.csv:70003: column \"merchant\": duplicate key \"m42\" (first on line 44)\n  \
         rules.toml:1: [lists.risk]: risk.csv:70004: column \"risk\": \"high\" is not an int\n  \
         rules.toml:1: [lists.risk]: risk.csv:70006: column \"merchant\": duplicate key \"m70000\" (first on line 70005)\n",
    );
}
