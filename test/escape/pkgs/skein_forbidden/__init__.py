"""A package in sandbox.packagePaths that is NOT on sandbox.allowedPackages."""


def secret():
    return 'the forbidden package was imported'
