/* The bill's month view (templates/bill.html): the page is drawn by the server; this only shows
   another month as soon as one is picked (the Show button does the same without a script). */
"use strict";
(function () {
  const input = document.getElementById("month");
  if (!input || !input.form) return;
  input.addEventListener("change", function () {
    if (/^\d{4}-\d{2}$/.test(input.value)) input.form.submit();
  });
})();
