# The double-ellipsoid geometry of CLIP — from image-caption data to raw CLIP embeddings
# to one cached analysis stage per claim of the paper.
#
#   snakemake --cores 2 --configfile config/demo.yaml     # offline demo
#   snakemake --cores 8                                   # the paper: COCO val2017 x ViT-B-32/openai
#
# See README.md for the outputs, the cluster profile and reruns.

import os

from snakemake.utils import min_version

min_version("9.19")


# The HTML report's front page (snakemake --report report.html): what the workflow does, how to read it.
report: "report/workflow.rst"


# config/config.yaml (the paper's setup) unless --configfile names another: Snakemake would
# otherwise merge the two, and the demo would inherit COCO's dataset. --config key=value
# overrides apply on top of either. Used as a module, the host's `config:` is this workflow's
# config and this line is skipped. The path is this workflow's own, not the working directory's.
if not workflow.overwrite_configfiles:

    configfile: os.path.join(str(workflow.current_basedir), "config", "config.yaml")


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/embed.smk"
include: "rules/geometry.smk"
include: "rules/loss.smk"
include: "rules/conformity.smk"
include: "rules/summary.smk"
include: "rules/compare.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        all_targets(),
