"""Installable library: package ``sfn_pipelines`` lives under ``constructs/``.

``constructs/`` itself must never hold an ``__init__.py``: a package named
``constructs`` would shadow the CDK ``constructs`` dependency.
"""

from setuptools import find_packages, setup

setup(
    name="sfn-pipelines",
    version="0.1.0",
    description="Synth-time AWS Step Functions workflows for ML pipeline scripts",
    package_dir={"": "constructs"},
    packages=find_packages(where="constructs"),
    package_data={"sfn_pipelines": ["py.typed"]},
    python_requires=">=3.10",
    install_requires=[
        "pyyaml>=6.0",
        "networkx>=3.2",
        "jsonschema>=4.20",
    ],
    extras_require={
        "cdk": ["aws-cdk-lib==2.275.0", "constructs>=10.8.1,<11"],
    },
    entry_points={"console_scripts": ["sfn-pipelines=sfn_pipelines.cli:main"]},
)
