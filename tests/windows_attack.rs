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

/// The line of a duplicate's first past the first 65,536 keys is found by reading the list
/// again, and that reading took the csv crate's lines: the line above with CRLF line ends,
/// line 1 with lone CRs, and the line before blank lines ahead of the key.
#[test]
fn a_duplicate_key_past_the_first_65536_names_its_first_line_whatever_the_line_ends() {
    let wd = Workdir::new("attack-list-duplicate-line-ends");
    wd.rules(
        "[lists.risk]\nfile = \"risk.csv\"\nkey = \"merchant\"\nvalue = \"risk\"\ntype = \"int\"\n\
         [[rule]]\nid = 1\nname = \"r\"\nwhen = \"(risk[merchant] ?? 0) > 50\"\n",
    );
    // m69999 is first on line 70,001 (after two blank lines: 70,003), again on the next.
    for (eol, blank, first) in [
        ("\r\n", "", 70_001),
        ("\r", "", 70_001),
        ("\n", "\n\n", 70_003),
    ] {
        let mut list = format!("merchant,risk{eol}");
        for i in 0..69_999 {
            list.push_str(&format!("m{i},{}{eol}", i % 100));
        }
        list.push_str(&format!("{blank}m69999,1{eol}m69999,2{eol}"));
        wd.create("risk.csv", list);
        wd.run(&["check", "rules.toml"]).expect_code(1).expect_stderr(&format!(
            "txguard: error: rules.toml has 1 error:\n  \
             rules.toml:1: [lists.risk]: risk.csv:{}: column \"merchant\": duplicate key \"m69999\" (first on line {first})\n",
            first + 1
        ));
    }
}

/// One row dated 29 days ahead of its account's others (a clock off by a month) makes each
/// later row of the account late: each took O(rows kept) for a sum, an average, a
/// distinct, a min or a max (50,000 rows: 1.5 s, 3.6 s and 2.2 s in a release build,
/// quadratic in the rows). They now take the running aggregate less the few rows after
/// their time, or the best of the rows before them known from the previous row: exact
/// values here (a value held only by the row ahead is no value of the rows before it),
/// and no hang.
#[test]
fn rows_after_one_dated_ahead_cost_no_scan_of_the_rows_before_them() {
    let wd = Workdir::new("attack-late-suffix");
    wd.rules(
        "[columns]\nid = \"int\"\namount = \"float\"\n\
         [windows.s]\nkey = \"account\"\ntime = \"timestamp\"\nspan = \"30d\"\nfunction = \"sum\"\nof = \"amount\"\n\
         [windows.a]\nkey = \"account\"\ntime = \"timestamp\"\nspan = \"30d\"\nfunction = \"avg\"\nof = \"amount\"\n\
         [windows.d]\nkey = \"account\"\ntime = \"timestamp\"\nspan = \"30d\"\nfunction = \"distinct\"\nof = \"amount\"\n\
         [windows.lo]\nkey = \"account\"\ntime = \"timestamp\"\nspan = \"30d\"\nfunction = \"min\"\nof = \"amount\"\n\
         [windows.hi]\nkey = \"account\"\ntime = \"timestamp\"\nspan = \"30d\"\nfunction = \"max\"\nof = \"amount\"\n\
         [[rule]]\nid = 1\nname = \"r\"\nwhen = \"id % 25000 == 0 || id < 12\"\nreason = \"{s} {a} {d} {lo} {hi}\"\n",
    );
    // Accounts A (even ids) and B (odd ids) each have a row on day 30 first: A's amount 7
    // (no other row has it), B's 3 (as many do). Then 100,000 rows 6 s apart from day 1.
    let n = 100_001;
    let amount = |id: u64| (id / 2 % 4) as f64;
    let mut csv = String::from(
        "id,account,timestamp,amount\n0,A,2026-01-30T00:00:00Z,7\n1,B,2026-01-30T00:00:00Z,3\n",
    );
    for id in 2..=n {
        let s = id * 6;
        csv.push_str(&format!(
            "{id},{},2026-01-{:02}T{:02}:{:02}:{:02}Z,{}\n",
            if id % 2 == 0 { "A" } else { "B" },
            1 + s / 86_400,
            s / 3600 % 24,
            s / 60 % 60,
            s % 60,
            amount(id)
        ));
    }
    wd.create("tx.csv", csv);
    let mut expected = String::new();
    for id in 0..=n {
        if !(id % 25_000 == 0 || id < 12) {
            continue;
        }
        let (s, a, d, lo, hi) = match id {
            0 => (7.0, 7.0, 1, 7.0, 7.0),
            1 => (3.0, 3.0, 1, 3.0, 3.0),
            _ => {
                let mine: Vec<f64> = (2..=id).filter(|i| i % 2 == id % 2).map(amount).collect();
                let s: f64 = mine.iter().sum();
                let mut distinct: Vec<u64> = mine.iter().map(|v| *v as u64).collect();
                distinct.sort();
                distinct.dedup();
                let lo = mine.iter().copied().fold(f64::MAX, f64::min);
                let hi = mine.iter().copied().fold(f64::MIN, f64::max);
                (s, s / mine.len() as f64, distinct.len(), lo, hi)
            }
        };
        expected.push_str(&format!("{id},1,true,{s:?} {a:?} {d} {lo:?} {hi:?}\n"));
    }
    let run = wd.run_within(
        std::time::Duration::from_secs(60),
        &["run", "tx.csv", "--rules", "rules.toml", "-q"],
    );
    run.expect_success();
    let stdout = run.stdout();
    let fired: String = stdout
        .lines()
        .filter(|l| l.contains(",true,"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(fired, expected);
    assert_eq!(stdout.lines().count() as u64, n + 2);
}
