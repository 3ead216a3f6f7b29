/* Planning enhancements (the page works without them): highlight and count the selection
   as it changes, tick a crèche day when its times are edited, copy one day's times and
   paste them on the days chosen. Nothing is saved here: the form still posts. */
(function () {
  "use strict";
  var form = document.getElementById("planning-form");
  if (!form) { return; }
  var status = document.getElementById("selection-etat");
  var outside = parseInt(form.getAttribute("data-outside") || "0", 10);
  var copied = null;
  var pasteButton = form.querySelector("[data-paste]");
  var boxes = "input[type=checkbox][name=book], input[type=checkbox][name=cancel]";

  function say(text) { if (status) { status.textContent = text; } }

  function count() {
    var books = form.querySelectorAll("input[name=book]:checked").length;
    var cancels = form.querySelectorAll("input[name=cancel]:checked").length;
    var shown = books + cancels;
    var text = shown ? books + (books > 1 ? " jours" : " jour") + " à réserver, " + cancels + " à annuler ici"
                     : "Aucun jour sélectionné ici";
    if (outside) { text += " ; " + outside + " autre" + (outside > 1 ? "s" : "") + " en dehors des jours affichés"; }
    say(text + ".");
  }

  function mark(box) {
    var cell = box.closest("td");
    if (cell) { cell.classList.toggle("is-selected", box.checked); }
  }

  form.addEventListener("change", function (event) {
    var target = event.target;
    if (target.matches(boxes)) {
      mark(target);
      count();
    } else if (target.matches("input[type=time]")) {
      var box = target.closest("td").querySelector("input[name=book]");
      if (box && !box.checked) { box.checked = true; mark(box); count(); }
    }
  });

  Array.prototype.forEach.call(form.querySelectorAll("[data-copy]"), function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      var times = button.closest(".times").querySelectorAll("input[type=time]");
      copied = [times[0].value, times[1].value];
      if (pasteButton) { pasteButton.disabled = false; }
      say("Horaires copiés : " + copied[0] + " – " + copied[1] + ". Cochez les jours puis « Coller sur les jours choisis ».");
    });
  });

  if (pasteButton) {
    pasteButton.hidden = false;
    pasteButton.addEventListener("click", function () {
      if (!copied) { return; }
      var done = 0;
      Array.prototype.forEach.call(form.querySelectorAll("input[name=book]:checked"), function (box) {
        var times = box.closest("td").querySelectorAll(".times input[type=time]");
        if (times.length === 2) { times[0].value = copied[0]; times[1].value = copied[1]; done += 1; }
      });
      say("Horaires " + copied[0] + " – " + copied[1] + " collés sur " + done + (done > 1 ? " jours." : " jour."));
    });
  }
})();
