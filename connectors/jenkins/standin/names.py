"""Jenkins' spelling: class names, result values, permalinks, URL segments and fake ids.

Class names and small constants come from the recorded responses in ``data/jenkins/``.
"""

from __future__ import annotations

import hashlib
import time
from urllib.parse import quote


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# --------------------------------------------------------------------------------------------
# Class names and small constants (from the recorded responses in data/jenkins/)
# --------------------------------------------------------------------------------------------

FREESTYLE_JOB = "hudson.model.FreeStyleProject"
PIPELINE_JOB = "org.jenkinsci.plugins.workflow.job.WorkflowJob"
FREESTYLE_BUILD = "hudson.model.FreeStyleBuild"
PIPELINE_BUILD = "org.jenkinsci.plugins.workflow.job.WorkflowRun"
#: A Maven job, as jenkins-rest's recorded root listing (``jobsInRootFolder.json``) shows one;
#: its builds are AbstractBuilds like a freestyle build's, under maven-plugin's class name.
#: Its modules (``<job>/<groupId>$<artifactId>``) are not modelled: Jenkins does not list
#: them among ``jobs``, and here they exist only as names in other builds' upstream causes.
MAVEN_JOB = "hudson.maven.MavenModuleSet"
MAVEN_BUILD = "hudson.maven.MavenModuleSetBuild"
CONTAINER_CLASSES = {
    "folder": "com.cloudbees.hudson.plugins.folder.Folder",
    "multibranch": "org.jenkinsci.plugins.workflow.multibranch.WorkflowMultiBranchProject",
    "org": "jenkins.branch.OrganizationFolder",
}
BUILD_DATA = "hudson.plugins.git.util.BuildData"
CAUSE_ACTION = "hudson.model.CauseAction"
PARAMETERS_ACTION = "hudson.model.ParametersAction"
USER_CAUSE = "hudson.model.Cause$UserIdCause"

#: Jenkins ``Result`` values, best first (the ordinal order of ``hudson.model.Result``).
RESULTS = ("SUCCESS", "UNSTABLE", "FAILURE", "NOT_BUILT", "ABORTED")
_BALL = {
    "SUCCESS": "blue",
    "UNSTABLE": "yellow",
    "FAILURE": "red",
    "NOT_BUILT": "notbuilt",
    "ABORTED": "aborted",
}
#: wfapi ``StatusExt`` for a finished run's result (``FAILED``, not ``FAILURE``).
_WF_STATUS = {
    "SUCCESS": "SUCCESS",
    "UNSTABLE": "UNSTABLE",
    "FAILURE": "FAILED",
    "NOT_BUILT": "NOT_EXECUTED",
    "ABORTED": "ABORTED",
}
#: Permalinks Jenkins serves under a job (``job/x/lastBuild/api/json``).
PERMALINKS = _words(
    "lastBuild lastCompletedBuild lastSuccessfulBuild lastFailedBuild lastStableBuild "
    "lastUnstableBuild lastUnsuccessfulBuild"
)
#: ``builds`` is ``getBuilds().limit(100)`` in core ``Job.java``.
BUILDS_CAP = 100
_DAY_MS = 86_400_000


def _now_ms() -> int:
    return int(time.time() * 1000)


def _enc(segment: str) -> str:
    """Encode one URL path segment like Jenkins' ``Util.rawEncode`` (so ``%`` becomes ``%25``)."""
    return quote(segment, safe="!$&'()*+,=@")


def _sha(*parts: object) -> str:
    """A stable fake git SHA-1 for generated data (not security relevant)."""
    text = "\0".join(str(p) for p in parts).encode()
    return hashlib.sha1(text, usedforsecurity=False).hexdigest()
