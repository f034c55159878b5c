"""The QLM HTTP front: ``/qlmservice.asmx/<Method>`` answering ``<QuickLicenseManager>`` XML."""
