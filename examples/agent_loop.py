"""A coding agent's loop against a Moat Session, without an LLM: write code and its tests,
run them, read the failure, write a fix, run again. The "model" is a table of fixes keyed by
the failure it reads, so the loop is deterministic; a real agent asks its LLM there.

    KUBECONFIG=... python3 examples/agent_loop.py [--namespace default]

Exits 0 once the tests pass, 1 if they never do.
"""
import argparse
import sys

from moat import Sandbox

CODE = '''def mean(xs):
    return sum(xs) / len(xs) + 1
'''
TESTS = '''import unittest
from stats import mean

class T(unittest.TestCase):
    def test_mean(self):
        self.assertEqual(mean([1, 2, 3]), 2)

    def test_empty(self):
        self.assertEqual(mean([]), 0)

unittest.main()
'''
# what the "model" answers to a failure it reads: the fix for the code
FIXES = {
    "AssertionError: 3.0 != 2": ("return sum(xs) / len(xs) + 1", "return sum(xs) / len(xs)"),
    "ZeroDivisionError": ("return sum(xs) / len(xs)",
                          "return sum(xs) / len(xs) if xs else 0"),
}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--namespace", default="default")
    p.add_argument("--image", default="moat.local/python:3.11")
    a = p.parse_args()
    with Sandbox.create(image=a.image, namespace=a.namespace, idle_timeout="5m",
                        cpu="200m", memory="256Mi") as sb:
        print(f"sandbox {sb.name}: {sb.isolation.runtime} ({sb.isolation.reason})")
        sb.files.write("/work/stats.py", CODE)
        sb.files.write("/work/test_stats.py", TESTS)
        for attempt in range(1, 5):
            r = sb.exec(["python3", "test_stats.py"], cwd="/work", timeout=60)
            print(f"attempt {attempt}: exit {r.exit_code}")
            if r.exit_code == 0:
                print("tests pass")
                return 0
            failure = next((k for k in FIXES if k in r.stderr), None)
            if failure is None:
                print(r.stderr, file=sys.stderr)
                return 1
            old, new = FIXES[failure]
            code = sb.files.read("/work/stats.py").decode()
            sb.files.write("/work/stats.py", code.replace(old, new))
            print(f"  read {failure!r}: fixed")
    return 1


if __name__ == "__main__":
    sys.exit(main())
