#!/usr/bin/env bash
# Runs the shards, waits for every index to complete, then merges. Uses the current
# kubectl context and namespace; the claim txguard-data must hold tx.csv and rules.toml
# and a directory out/.
set -euo pipefail
cd "$(dirname "$0")"
kubectl delete job txguard-shards txguard-merge --ignore-not-found
kubectl apply -f shards-job.yaml
# A failed Job never becomes complete: watch for either.
while :; do
    state=$(kubectl get job txguard-shards \
        -o jsonpath='{.status.conditions[?(@.status=="True")].type}')
    case "$state" in
        *Complete*) break ;;
        *Failed*)
            echo "txguard-shards failed: kubectl logs -l job-name=txguard-shards" >&2
            exit 1
            ;;
    esac
    sleep 10
done
kubectl apply -f merge-job.yaml
kubectl wait --for=condition=complete job/txguard-merge --timeout=1h
kubectl logs job/txguard-merge
