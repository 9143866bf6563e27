"""Lines of code of Python files: blank lines, comments and docstrings (any string statement) not counted.

    python bench/loc.py minipg.py lab.py nets.py algos.py
"""
import ast
import sys


def code_lines(path):
    src = open(path).read()
    strings = set()
    for n in ast.walk(ast.parse(src)):
        if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str):
            strings.update(range(n.lineno, n.end_lineno + 1))
    return sum(1 for i, line in enumerate(src.splitlines(), 1)
               if line.strip() and not line.strip().startswith("#") and i not in strings)


if __name__ == "__main__":
    for p in sys.argv[1:]:
        print(f"{p}: {code_lines(p)} lines of code")
